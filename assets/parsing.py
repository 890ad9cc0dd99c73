"""Landing → raw deliveries: every landed line becomes exactly one of a parsed delivery, a
duplicate of one already seen, or a quarantined record with its original text and a reason.

Parsing uses DuckDB's JSON functions on an in-memory connection: they judge each line on
its own (a malformed line never fails its neighbours) and run vectorised. Signal bodies are
kept as JSON text; the readings layer interprets them.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl

EVENT_TYPES = ("VEHICLE_STATE", "VEHICLE_ERROR", "VERIFY")


def read_landing_lines(path: Path) -> pl.DataFrame:
    """The lines of one landing file, as received: `line_no` (1-based), `text`, and whether
    the line was not valid UTF-8 (its text then carries replacement characters)."""
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()  # the newline that ends the last line does not start another
    texts: list[str] = []
    bad: list[bool] = []
    for raw in raw_lines:
        raw = raw.removesuffix(b"\r")
        try:
            texts.append(raw.decode("utf-8"))
            bad.append(False)
        except UnicodeDecodeError:
            texts.append(raw.decode("utf-8", errors="replace"))
            bad.append(True)
    return pl.DataFrame({"line_no": range(1, len(texts) + 1), "text": texts, "bad_utf8": bad}, schema=LINES_SCHEMA)


LINES_SCHEMA = {"line_no": pl.Int64, "text": pl.String, "bad_utf8": pl.Boolean}


def file_batch_id(relative_path: str, content_sha256: str) -> str:
    """A batch is one landing file's content at one path: a changed file is a new batch."""
    return hashlib.sha256(f"{relative_path}\n{content_sha256}".encode()).hexdigest()[:20]


@dataclass(frozen=True)
class RawBatch:
    deliveries: pl.DataFrame      # one row per parsed, first-seen delivery
    signals: pl.DataFrame         # one row per signal of those deliveries (VEHICLE_STATE)
    vehicle_errors: pl.DataFrame  # one row per error of VEHICLE_ERROR deliveries
    duplicates: pl.DataFrame      # one row per line whose eventId was already seen
    quarantine: pl.DataFrame      # one row per line that could not be parsed

    @property
    def counts(self) -> dict[str, int]:
        return {
            "lines": self.deliveries.height + self.duplicates.height + self.quarantine.height,
            "parsed": self.deliveries.height,
            "duplicates": self.duplicates.height,
            "quarantined": self.quarantine.height,
            "signals": self.signals.height,
            "vehicle_errors": self.vehicle_errors.height,
        }


# Times arrive as ISO-8601 strings or epoch numbers in seconds or milliseconds.
_TIME_MACRO = """
CREATE OR REPLACE TEMP MACRO json_time(j) AS CASE
    WHEN json_type(j) IN ('UBIGINT', 'BIGINT', 'DOUBLE') THEN
        to_timestamp(CAST(j AS DOUBLE) / CASE WHEN abs(CAST(j AS DOUBLE)) >= 1e11 THEN 1000 ELSE 1 END)
    WHEN json_type(j) = 'VARCHAR' THEN TRY_CAST(j ->> '$' AS TIMESTAMPTZ)
END
"""

_ENVELOPE_SQL = """
WITH checked AS (
    SELECT line_no, text,
        CASE WHEN bad_utf8 THEN 'invalid_utf8'
             WHEN trim(text) = '' THEN 'empty_line'
             WHEN NOT json_valid(text) THEN 'invalid_json' END AS syntax_error
    FROM lines
), objects AS (
    SELECT line_no, text, syntax_error,
        CASE WHEN syntax_error IS NULL AND json_type(text) <> 'OBJECT' THEN 'not_an_object' END AS shape_error
    FROM checked
), envelope AS (
    SELECT line_no, text,
        text ->> '$.eventId' AS event_id,
        text ->> '$.eventType' AS event_type,
        text ->> '$.data.vehicle.id' AS vehicle_id,
        text ->> '$.data.vehicle.make' AS make,
        text ->> '$.data.vehicle.model' AS model,
        TRY_CAST(text ->> '$.data.vehicle.year' AS INTEGER) AS year,
        text ->> '$.data.vehicle.vin' AS vin,
        text ->> '$.data.user.id' AS user_id,
        json_time(json_extract(text, '$.meta.deliveredAt')) AS delivered_at,
        text ->> '$.meta.deliveryId' AS delivery_id,
        text ->> '$.meta.webhookId' AS webhook_id,
        text ->> '$.meta.mode' AS mode,
        text ->> '$.meta.version' AS payload_version,
        json_type(text, '$.data.signals') AS signals_type,
        json_type(text, '$.data.errors') AS errors_type
    FROM objects WHERE syntax_error IS NULL AND shape_error IS NULL
)
SELECT o.line_no, o.text, e.* EXCLUDE (line_no, text),
    coalesce(o.syntax_error, o.shape_error,
        CASE WHEN e.event_id IS NULL OR trim(e.event_id) = '' THEN 'missing_event_id'
             WHEN e.event_type IS NULL OR e.event_type NOT IN ('VEHICLE_STATE', 'VEHICLE_ERROR', 'VERIFY')
                 THEN 'unknown_event_type'
             WHEN e.delivered_at IS NULL THEN 'invalid_delivered_at'
             WHEN e.event_type <> 'VERIFY' AND (e.vehicle_id IS NULL OR trim(e.vehicle_id) = '')
                 THEN 'missing_vehicle_id'
             WHEN e.event_type = 'VEHICLE_STATE' AND e.signals_type IS DISTINCT FROM 'ARRAY'
                 THEN 'missing_signals'
             WHEN e.event_type = 'VEHICLE_ERROR' AND e.errors_type IS DISTINCT FROM 'ARRAY'
                 THEN 'missing_errors' END) AS reason
FROM objects o LEFT JOIN envelope e USING (line_no)
ORDER BY o.line_no
"""

_SIGNALS_SQL = """
WITH items AS (
    SELECT event_id, vehicle_id, delivered_at,
        unnest(json_extract(text, '$.data.signals[*]')) AS sig,
        generate_subscripts(json_extract(text, '$.data.signals[*]'), 1) - 1 AS signal_index
    FROM accepted WHERE event_type = 'VEHICLE_STATE'
), fields AS (
    SELECT event_id, vehicle_id, signal_index, delivered_at,
        sig ->> '$.code' AS code,
        sig ->> '$.name' AS name,
        sig ->> '$.group' AS "group",
        CAST(json_extract(sig, '$.body') AS VARCHAR) AS body,
        CASE WHEN json_type(sig, '$.status') = 'VARCHAR' THEN sig ->> '$.status'
             ELSE sig ->> '$.status.value' END AS status,
        sig ->> '$.status.error.type' AS error_type,
        sig ->> '$.status.error.code' AS error_code,
        sig ->> '$.status.error.description' AS error_description,
        json_extract(sig, '$.meta.oemUpdatedAt') AS oem_raw,
        json_extract(sig, '$.meta.retrievedAt') AS retrieved_raw
    FROM items
)
SELECT event_id, vehicle_id, signal_index, code, name, "group", body, status,
    error_type, error_code, error_description,
    json_time(oem_raw) AS oem_updated_at,
    json_time(retrieved_raw) AS retrieved_at,
    delivered_at,
    -- The contract's time: when the car recorded it, else when it was read, else delivery.
    -- A time that is present but unreadable stays null here and is quarantined downstream.
    CASE WHEN oem_raw IS NOT NULL AND json_type(oem_raw) <> 'NULL' THEN json_time(oem_raw)
         WHEN retrieved_raw IS NOT NULL AND json_type(retrieved_raw) <> 'NULL' THEN json_time(retrieved_raw)
         ELSE delivered_at END AS reading_time,
    CASE WHEN oem_raw IS NOT NULL AND json_type(oem_raw) <> 'NULL' THEN 'oem'
         WHEN retrieved_raw IS NOT NULL AND json_type(retrieved_raw) <> 'NULL' THEN 'retrieved'
         ELSE 'delivered' END AS time_source
FROM fields
ORDER BY event_id, signal_index
"""

_ERRORS_SQL = """
WITH items AS (
    SELECT event_id, vehicle_id, delivered_at,
        unnest(json_extract(text, '$.data.errors[*]')) AS err,
        generate_subscripts(json_extract(text, '$.data.errors[*]'), 1) - 1 AS error_index
    FROM accepted WHERE event_type = 'VEHICLE_ERROR'
)
SELECT event_id, vehicle_id, error_index, delivered_at AS occurred_at,
    err ->> '$.type' AS type, err ->> '$.code' AS code, err ->> '$.state' AS state,
    CASE WHEN json_type(err, '$.resolution') = 'OBJECT' THEN err ->> '$.resolution.type'
         ELSE err ->> '$.resolution' END AS resolution,
    err ->> '$.description' AS description
FROM items
ORDER BY event_id, error_index
"""


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(_TIME_MACRO)
    return con


def parse_lines(
    lines: pl.DataFrame,
    *,
    source_file: str,
    batch_id: str,
    seen_event_ids: pl.Series | None = None,
    file_landed_on: date | None = None,
) -> RawBatch:
    """Judge every line of one landing file. `seen_event_ids` are the eventIds of deliveries
    already in the lake: a line that repeats one (or an earlier line of this file) is a
    duplicate. `file_landed_on` is the day the file landed, used for lines that carry no
    delivery time of their own."""
    con = _connect()
    try:
        con.register("lines", lines)
        judged = con.sql(_ENVELOPE_SQL).pl()
        # The day a line landed: its delivery time, else the file's latest delivery, else the file's own.
        latest = judged.get_column("delivered_at").max()
        fallback = latest.date() if isinstance(latest, datetime) else (file_landed_on or datetime.now(UTC).date())
        judged = judged.with_columns(
            landed_on=pl.col("delivered_at").dt.date().fill_null(fallback),
            source_file=pl.lit(source_file),
            batch_id=pl.lit(batch_id),
        )

        quarantine = (
            judged.filter(pl.col("reason").is_not_null())
            .select("batch_id", "source_file", "line_no", "landed_on", "event_id", "vehicle_id",
                    pl.col("text").alias("raw_text"), "reason")
        )
        accepted = judged.filter(pl.col("reason").is_null())
        first_in_file = accepted.select(pl.col("event_id").is_first_distinct()).to_series()
        seen_before = (
            accepted.get_column("event_id").is_in(seen_event_ids.implode())
            if seen_event_ids is not None and len(seen_event_ids)
            else pl.repeat(False, accepted.height, eager=True)
        )
        is_duplicate = ~first_in_file | seen_before
        duplicates = accepted.filter(is_duplicate).select(
            "batch_id", "source_file", "line_no", "landed_on", "event_id", "vehicle_id", "delivered_at"
        )
        accepted = accepted.filter(~is_duplicate)

        con.register("accepted", accepted.select("event_id", "event_type", "vehicle_id", "delivered_at", "text"))
        signals = con.sql(_SIGNALS_SQL).pl()
        errors = con.sql(_ERRORS_SQL).pl()
    finally:
        con.close()

    landed = accepted.select("event_id", "landed_on", "batch_id")
    signals = signals.join(landed, on="event_id", how="left")
    errors = errors.join(landed, on="event_id", how="left")
    signal_counts = signals.group_by("event_id").len("signal_count")
    deliveries = (
        accepted.join(signal_counts, on="event_id", how="left")
        .with_columns(pl.col("signal_count").fill_null(0).cast(pl.Int32))
        .select("event_id", "event_type", "vehicle_id", "user_id", "make", "model", "year", "vin",
                "delivered_at", "delivery_id", "webhook_id", "mode", "payload_version", "signal_count",
                "landed_on", "source_file", "line_no", "batch_id", pl.col("text").alias("payload"))
    )
    return RawBatch(deliveries=deliveries, signals=signals, vehicle_errors=errors,
                    duplicates=duplicates, quarantine=quarantine)


def empty_batch() -> RawBatch:
    """A batch of no lines: the schemas of every raw table."""
    return parse_lines(pl.DataFrame(schema=LINES_SCHEMA), source_file="", batch_id="", file_landed_on=date(2020, 1, 1))
