-- Every vehicle × calendar month (UTC) from the month of the first odometer reading to the
-- month of the last one: the periods of marts.mileage_verification.
WITH span AS (
    SELECT min(o.day) AS first_day, max(o.day) AS last_day FROM marts.odometer_readings o
), months AS (
    SELECT unnest(generate_series(date_trunc('month', s.first_day)::DATE, s.last_day, INTERVAL 1 MONTH))::DATE AS period_start
    FROM span s
)
SELECT v.vehicle_id, m.period_start, (m.period_start + INTERVAL 1 MONTH - INTERVAL 1 DAY)::DATE AS period_end,
    marts.utc_midnight(m.period_start) AS starts_at,
    marts.utc_midnight(m.period_start + INTERVAL 1 MONTH) AS ends_at
FROM marts.vehicles v CROSS JOIN months m
