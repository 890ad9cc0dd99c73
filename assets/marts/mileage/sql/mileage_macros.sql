-- The mileage macros an insurer calls for any period (dates inclusive, UTC days):
--   marts.verified_mileage(vehicle_id, start_date, end_date)  the columns of marts.mileage_verification
--   marts.mileage_evidence(vehicle_id, start_date, end_date)  the odometer readings behind that row
-- Both fail with a clear error for an unknown vehicle or a start after the end.
-- The macro bodies are filled in from mileage_evidence.sql and mileage_verification.sql
-- (assets/marts/mileage.py), the same SQL that builds marts.mileage_verification.
CREATE OR REPLACE MACRO marts.utc_midnight(d) AS to_timestamp(epoch(CAST(d AS DATE)::TIMESTAMP));

CREATE OR REPLACE MACRO marts.mileage_period(vehicle_id, start_date, end_date) AS TABLE
    SELECT
        CASE WHEN k.known IS NULL THEN error('unknown vehicle: ' || a.arg_vehicle) ELSE a.arg_vehicle END AS vehicle_id,
        CASE WHEN a.arg_start > a.arg_end
             THEN error('the period starts after it ends: ' || a.arg_start || ' > ' || a.arg_end)
             ELSE a.arg_start END AS period_start,
        a.arg_end AS period_end,
        marts.utc_midnight(a.arg_start) AS starts_at,
        marts.utc_midnight(a.arg_end + 1) AS ends_at
    FROM (SELECT CAST(vehicle_id AS VARCHAR) AS arg_vehicle, CAST(start_date AS DATE) AS arg_start,
                 CAST(end_date AS DATE) AS arg_end) a
    LEFT JOIN (SELECT DISTINCT v.vehicle_id AS known FROM marts.vehicles v) k ON k.known = a.arg_vehicle;

CREATE OR REPLACE MACRO marts.mileage_evidence(vehicle_id, start_date, end_date) AS TABLE
    WITH periods AS (FROM marts.mileage_period(vehicle_id, start_date, end_date))
    SELECT * FROM (${EVIDENCE}) ORDER BY reading_time;

CREATE OR REPLACE MACRO marts.verified_mileage(vehicle_id, start_date, end_date) AS TABLE
    ${VERIFIED_MILEAGE};
