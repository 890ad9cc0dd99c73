-- One row per vehicle: its identity from the latest delivery, its powertrain from the
-- signals it reports (battery and engine signals: PHEV; battery only: BEV; engine only: ICE).
WITH identity AS (
    SELECT vehicle_id,
        arg_max(make, delivered_at) AS make,
        arg_max(model, delivered_at) AS model,
        arg_max(year, delivered_at) AS year,
        min(delivered_at) AS first_delivered_at,
        max(delivered_at) AS last_delivered_at,
        count(*) AS deliveries
    FROM deliveries
    WHERE vehicle_id IS NOT NULL
    GROUP BY vehicle_id
), reported AS (
    SELECT vehicle_id, metric FROM readings
    UNION
    SELECT e.vehicle_id, m.metric
    FROM signal_errors e JOIN (VALUES
        ('tractionbattery-stateofcharge', 'soc_pct'), ('tractionbattery-nominalcapacity', 'battery_capacity_kwh'),
        ('internalcombustionengine-oillife', 'oil_life_pct'), ('internalcombustionengine-fuellevel', 'fuel_level_pct')
    ) AS m(code, metric) ON e.code = m.code
), powertrain AS (
    SELECT vehicle_id,
        bool_or(metric IN ('soc_pct', 'battery_capacity_kwh', 'energy_added_kwh', 'charge_power_kw')) AS has_battery,
        bool_or(metric IN ('oil_life_pct', 'fuel_level_pct')) AS has_engine
    FROM reported
    GROUP BY vehicle_id
), readings_summary AS (
    SELECT vehicle_id,
        arg_max(value, reading_time) FILTER (WHERE metric = 'battery_capacity_kwh') AS battery_capacity_kwh,
        min(reading_time) AS first_reading_at,
        max(reading_time) AS last_reading_at,
        count(*) AS readings
    FROM readings
    GROUP BY vehicle_id
)
SELECT i.vehicle_id, i.make, i.model, i.year,
    CASE WHEN p.has_battery AND p.has_engine THEN 'PHEV'
         WHEN p.has_battery THEN 'BEV'
         WHEN p.has_engine THEN 'ICE'
         ELSE 'UNKNOWN' END AS powertrain,
    round(r.battery_capacity_kwh, 2) AS battery_capacity_kwh,
    least(r.first_reading_at, i.first_delivered_at) AS first_seen_at,
    greatest(r.last_reading_at, i.last_delivered_at) AS last_seen_at,
    i.deliveries,
    coalesce(r.readings, 0) AS readings
FROM identity i
LEFT JOIN powertrain p USING (vehicle_id)
LEFT JOIN readings_summary r USING (vehicle_id)
ORDER BY i.vehicle_id
