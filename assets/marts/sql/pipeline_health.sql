-- One row per landing day (the UTC day a delivery was delivered): what landed and what became
-- of it. Reconciles: deliveries_landed = deliveries_parsed + duplicates + quarantined + erased
-- (lines of erased vehicles: dropped at ingest or removed by an erasure, only counted), and
-- signals = signals_read + signal_errors + signals_quarantined. files_quarantined counts the
-- landing files quarantined as files (unreadable, corrupt or cut gzip), on the day the file
-- landed (its modification time); the lines a cut gzip kept count as lines above.
WITH parsed AS (
    SELECT landed_on AS day, count(*) AS deliveries_parsed, CAST(sum(signal_count) AS BIGINT) AS signals
    FROM deliveries GROUP BY ALL
), duplicated AS (
    SELECT landed_on AS day, count(*) AS duplicates FROM duplicates GROUP BY ALL
), quarantined AS (
    SELECT landed_on AS day, count(*) AS quarantined FROM quarantined_lines GROUP BY ALL
), read AS (
    SELECT landed_on AS day, count(*) AS readings, count(DISTINCT (event_id, signal_index)) AS signals_read
    FROM readings GROUP BY ALL
), errored AS (
    SELECT landed_on AS day, count(*) AS signal_errors FROM signal_errors GROUP BY ALL
), held AS (
    SELECT landed_on AS day, count(*) AS signals_quarantined FROM quarantined_signals GROUP BY ALL
), erased AS (
    SELECT landed_on AS day, CAST(sum(lines) AS BIGINT) AS erased FROM erased_lines GROUP BY ALL
), files AS (
    SELECT landed_on AS day, count(*) AS files_quarantined FROM quarantined_files GROUP BY ALL
), days AS (
    SELECT day FROM parsed UNION SELECT day FROM duplicated UNION SELECT day FROM quarantined
    UNION SELECT day FROM files UNION SELECT day FROM erased
)
SELECT d.day,
    coalesce(p.deliveries_parsed, 0) + coalesce(u.duplicates, 0) + coalesce(q.quarantined, 0)
        + coalesce(x.erased, 0) AS deliveries_landed,
    coalesce(p.deliveries_parsed, 0) AS deliveries_parsed,
    coalesce(u.duplicates, 0) AS duplicates,
    coalesce(q.quarantined, 0) AS quarantined,
    coalesce(x.erased, 0) AS erased,
    coalesce(f.files_quarantined, 0) AS files_quarantined,
    coalesce(r.readings, 0) AS readings,
    coalesce(e.signal_errors, 0) AS signal_errors,
    coalesce(p.signals, 0) AS signals,
    coalesce(r.signals_read, 0) AS signals_read,
    coalesce(h.signals_quarantined, 0) AS signals_quarantined
FROM days d
LEFT JOIN parsed p USING (day)
LEFT JOIN duplicated u USING (day)
LEFT JOIN quarantined q USING (day)
LEFT JOIN erased x USING (day)
LEFT JOIN files f USING (day)
LEFT JOIN read r USING (day)
LEFT JOIN errored e USING (day)
LEFT JOIN held h USING (day)
ORDER BY d.day
