-- One row per error reported by a VEHICLE_ERROR delivery.
SELECT vehicle_id, occurred_at, type, code, state, resolution, description, signals AS affected_signals, event_id
FROM raw_vehicle_errors
ORDER BY vehicle_id, occurred_at, event_id, error_index
