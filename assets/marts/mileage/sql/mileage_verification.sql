-- Verified mileage of each period in `periods(vehicle_id, period_start, period_end,
-- starts_at, ends_at)`, from its `evidence` (mileage_evidence.sql over the same periods).
-- One row per period, with the figures, the anomalies that touch the period, and why its
-- status is what it is (see README "Mileage verification"). GAP_SECONDS and
-- TOLERANCE_KM are assets/marts/odometer.py's GAP_HOURS (in seconds) and TOLERANCE_KM.
-- Every column reference is qualified (see mileage_evidence.sql).
WITH valid AS (
    SELECT o.vehicle_id, o.reading_time, o.odometer_km, o.previous_odometer_km, o.gap_before
    FROM marts.odometer_readings o
    WHERE o.status <> 'spike'
), closing AS (  -- the first valid reading after the period: its step crosses the period's end
    SELECT p.vehicle_id, p.period_start, c.reading_time AS closing_at, c.gap_before AS closing_gap,
        c.odometer_km - c.previous_odometer_km AS closing_step_km
    FROM periods p
    ASOF LEFT JOIN valid c ON p.vehicle_id = c.vehicle_id AND p.ends_at <= c.reading_time
), summary AS (
    SELECT e.vehicle_id, e.period_start,
        count(*) AS evidence_readings,
        sum(e.credited_km) AS distance_km,
        count(DISTINCT e.day) FILTER (WHERE e.role = 'period' AND e.status <> 'spike') AS days_with_reading,
        arg_max(e.odometer_km, e.reading_time) FILTER (WHERE e.status <> 'spike') AS end_km,
        max(e.reading_time) FILTER (WHERE e.status <> 'spike') AS end_at,
        arg_min(e.odometer_km, e.reading_time) FILTER (WHERE e.status <> 'spike') AS start_km,
        min(e.reading_time) FILTER (WHERE e.status <> 'spike') AS start_at,
        bool_or(e.role = 'opening') AS has_opening,
        min(e.reading_time) FILTER (WHERE e.role = 'period' AND e.status <> 'spike') AS first_at,
        count(*) FILTER (WHERE e.role = 'period' AND e.status = 'spike') AS spikes,
        count(*) FILTER (WHERE e.role = 'period' AND e.status = 'rollback') AS rollbacks,
        count(*) FILTER (WHERE e.role = 'period' AND e.status = 'implausible_speed') AS implausible,
        count(*) FILTER (WHERE e.role = 'period' AND e.gap_before) AS gaps,
        count(*) FILTER (WHERE e.role = 'period' AND e.gap_before
                         AND e.odometer_km - e.previous_odometer_km > ${TOLERANCE_KM}) AS gaps_driven
    FROM evidence e
    GROUP BY e.vehicle_id, e.period_start
), services AS (  -- service records in the period: the dealer's odometer against the car's
    SELECT p.vehicle_id, p.period_start,
        count(*) AS service_records,
        count(*) FILTER (WHERE r.odometer_check = 'disagrees') AS service_disagreements
    FROM periods p
    JOIN marts.service_records r ON r.vehicle_id = p.vehicle_id
        AND r.serviced_at >= p.starts_at AND r.serviced_at < p.ends_at
    GROUP BY p.vehicle_id, p.period_start
), judged AS (
    SELECT p.vehicle_id, p.period_start, p.period_end, s.evidence_readings, s.distance_km,
        coalesce(sv.service_records, 0) AS service_records,
        coalesce(sv.service_disagreements, 0) AS service_disagreements,
        s.start_km, s.start_at, s.end_km, s.end_at, s.spikes, s.rollbacks, s.implausible, s.gaps,
        coalesce(s.days_with_reading, 0) AS days_with_reading,
        coalesce(s.gaps_driven, 0)
            + coalesce(c.closing_gap AND c.closing_step_km > ${TOLERANCE_KM}, false)::INT AS gaps_driven,
        coalesce(c.closing_gap, false) AS gap_across_end,
        -- no reading on one side of the period for more than the gap length
        coalesce(NOT s.has_opening, true)
            AND epoch(coalesce(s.first_at, p.ends_at)) - epoch(p.starts_at) > ${GAP_SECONDS} AS unobserved_start,
        c.closing_at IS NULL
            AND epoch(p.ends_at) - epoch(coalesce(s.end_at, p.starts_at)) > ${GAP_SECONDS} AS unobserved_end
    FROM periods p
    LEFT JOIN summary s ON s.vehicle_id = p.vehicle_id AND s.period_start = p.period_start
    LEFT JOIN closing c ON c.vehicle_id = p.vehicle_id AND c.period_start = p.period_start
    LEFT JOIN services sv ON sv.vehicle_id = p.vehicle_id AND sv.period_start = p.period_start
)
SELECT j.vehicle_id, j.period_start, j.period_end,
    round(j.start_km, 3) AS odometer_start_km,
    round(j.end_km, 3) AS odometer_end_km,
    round(coalesce(j.distance_km, 0), 3) AS distance_km,
    coalesce(j.evidence_readings, 0) AS evidence_readings,
    round(100.0 * j.days_with_reading / (j.period_end - j.period_start + 1), 1) AS coverage_pct,
    list_filter([
        CASE WHEN j.rollbacks > 0 THEN 'ROLLBACK' END,
        CASE WHEN j.spikes > 0 THEN 'SPIKE' END,
        CASE WHEN j.implausible > 0 THEN 'IMPLAUSIBLE_SPEED' END,
        CASE WHEN j.gaps > 0 OR j.gap_across_end OR j.unobserved_start OR j.unobserved_end THEN 'GAP' END
    ], lambda x: x IS NOT NULL) AS anomalies,
    CASE WHEN j.days_with_reading < 2 THEN 'INSUFFICIENT_DATA'
         WHEN j.rollbacks > 0 OR j.implausible > 0 OR j.gaps_driven > 0 OR j.unobserved_start OR j.unobserved_end
              OR j.service_disagreements > 0
             THEN 'NEEDS_REVIEW'
         ELSE 'VERIFIED' END AS status,
    CASE WHEN j.days_with_reading < 2 THEN 'valid odometer readings on fewer than two days of the period'
         ELSE coalesce(nullif(concat_ws('; ',
             CASE WHEN j.rollbacks > 0 THEN 'the odometer went back: distance is the increases on either side' END,
             CASE WHEN j.implausible > 0 THEN 'an increase faster than a car can drive was not counted' END,
             CASE WHEN j.gaps_driven > 0 THEN 'the odometer advanced across a stretch of more than 72 h without readings' END,
             CASE WHEN j.unobserved_start THEN 'no reading within 72 h after the period starts' END,
             CASE WHEN j.unobserved_end THEN 'no reading within 72 h before the period ends' END,
             CASE WHEN j.service_disagreements > 0
                  THEN 'a service record''s odometer disagrees with the car''s' END), ''),
             'every step between consecutive valid readings is plausible')
    END AS status_reason,
    j.start_at AS odometer_start_at,
    j.end_at AS odometer_end_at,
    j.service_records,
    j.service_disagreements
FROM judged j
