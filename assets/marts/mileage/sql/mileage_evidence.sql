-- The odometer readings behind the mileage of each period in
-- `periods(vehicle_id, period_start, period_end, starts_at, ends_at)` (dates inclusive,
-- `starts_at`/`ends_at` the period's first and first-after instants in UTC):
-- the opening reading (the last valid reading before the period: the odometer at its
-- start, and the start of the first step counted in the period) and every reading in the
-- period, spikes included (they are evidence of what was rejected; they count for nothing).
-- `credited_km` is the distance each reading adds to the period: their sum is its distance.
-- Every column reference is qualified: inside a table macro an unqualified `vehicle_id`
-- would be the macro's parameter.
WITH opening AS (
    SELECT p.vehicle_id, p.period_start, r.reading_time
    FROM periods p
    ASOF JOIN (SELECT o.vehicle_id, o.reading_time FROM marts.odometer_readings o WHERE o.status <> 'spike') r
        ON p.vehicle_id = r.vehicle_id AND p.starts_at > r.reading_time
), picked AS (
    SELECT p.vehicle_id, p.period_start, p.period_end, 'opening' AS role, r.* EXCLUDE (vehicle_id), 0.0 AS period_credited_km
    FROM periods p
    JOIN opening o ON o.vehicle_id = p.vehicle_id AND o.period_start = p.period_start
    JOIN marts.odometer_readings r ON r.vehicle_id = o.vehicle_id AND r.reading_time = o.reading_time
    UNION ALL
    SELECT p.vehicle_id, p.period_start, p.period_end, 'period' AS role, r.* EXCLUDE (vehicle_id), r.credited_km AS period_credited_km
    FROM periods p
    JOIN marts.odometer_readings r
        ON r.vehicle_id = p.vehicle_id AND r.reading_time >= p.starts_at AND r.reading_time < p.ends_at
)
SELECT e.vehicle_id, e.period_start, e.period_end, e.reading_time, e.day, e.odometer_km, e.status, e.role,
    e.period_credited_km AS credited_km,
    e.previous_reading_time, e.previous_odometer_km, e.gap_before,
    e.event_id, e.source_unit, e.delivered_at, e.source_file, e.line_no
FROM picked e
