"""Landing → raw deliveries: every landed line becomes exactly one of a parsed delivery, a
duplicate of one already seen, or a quarantined record with its original text and a reason.

Parsing uses DuckDB's JSON functions on an in-memory connection: they judge each line on
its own (a malformed line never fails its neighbours) and run vectorised. Signal bodies are
kept as JSON text; the readings layer interprets them.
"""

from __future__ import annotations

import hashlib
import os
import threading
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa


@dataclass(frozen=True)
class LandingContent:
    """What a landing file's bytes hold: its complete lines (newlines removed), and, when
    the file itself is faulty, why (`truncated_gzip`, `corrupt_gzip`) in a few words."""
    lines: list[bytes]
    fault: str | None = None
    detail: str | None = None


def gunzip(data: bytes) -> tuple[bytes, str | None, str | None]:
    """Decompress every gzip member of `data`, as far as it can be trusted. Returns the text,
    and the fault with a detail if there is one: `truncated_gzip` when the stream stops
    before its end (the text then holds everything before the cut), `corrupt_gzip` when
    the bytes are not gzip or fail gzip's own check (the text then holds the members before
    the bad one, each verified by its checksum)."""
    members: list[bytes] = []
    while True:
        member = zlib.decompressobj(wbits=31)  # a gzip header and trailer, checked by zlib
        try:
            text = member.decompress(data)
        except zlib.error as error:
            return b"".join(members), "corrupt_gzip", f"gzip member {len(members) + 1}: {error}"
        if not member.eof:
            return b"".join(members + [text]), "truncated_gzip", f"gzip member {len(members) + 1} is cut short"
        members.append(text)
        data = member.unused_data
        if not data.strip(b"\0"):  # gzip allows zero padding after the last member
            return b"".join(members), None, None


def landing_content(name: str, data: bytes) -> LandingContent:
    """The lines of one landing file's bytes (`*.gz` decompressed). Never raises: a file
    that is cut keeps its complete lines, and its partial last line is dropped."""
    fault = detail = None
    if name.endswith(".gz"):
        data, fault, detail = gunzip(data)
    lines = data.split(b"\n")
    if fault == "truncated_gzip":
        partial = lines.pop()  # the bytes after the last newline: a line cut short, or nothing
        detail += f"; {len(lines)} complete lines kept, {len(partial)} bytes of a partial line dropped"
    elif lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last line does not start another
    return LandingContent(lines, fault, detail)


def lines_frame(raw_lines: list[bytes], *, source_file: str = "", batch_id: str = "",
                landed_on: date | None = None) -> pl.DataFrame:
    """Lines as received: `line_no` (1-based), `text`, whether the line was not valid UTF-8
    (its text then carries replacement characters), and the batch they belong to
    (`landed_on`: the day the file landed, for lines without a delivery time)."""
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
    return pl.DataFrame(
        {"batch_id": batch_id, "source_file": source_file, "file_landed_on": landed_on or datetime.now(UTC).date(),
         "line_no": range(1, len(texts) + 1), "text": texts, "bad_utf8": bad},
        schema=LINES_SCHEMA,
    )


def read_landing_lines(path: Path, *, source_file: str = "", batch_id: str = "",
                       landed_on: date | None = None) -> pl.DataFrame:
    """The lines of one landing file, as `lines_frame` (a faulty gzip gives the lines it keeps)."""
    content = landing_content(path.name, path.read_bytes())
    return lines_frame(content.lines, source_file=source_file, batch_id=batch_id, landed_on=landed_on)


LINES_SCHEMA = {"batch_id": pl.String, "source_file": pl.String, "file_landed_on": pl.Date,
                "line_no": pl.Int64, "text": pl.String, "bad_utf8": pl.Boolean}

# A landing file quarantined as a file: one row per file version.
FILE_QUARANTINE_SCHEMA = {"batch_id": pl.String, "source_file": pl.String, "size": pl.Int64, "mtime_ns": pl.Int64,
                          "sha256": pl.String, "landed_on": pl.Date, "reason": pl.String, "detail": pl.String,
                          "lines_kept": pl.Int64}


def file_batch_id(relative_path: str, content_sha256: str) -> str:
    """A batch is one landing file's content at one path: a changed file is a new batch.
    The path's own bytes count, so a file name that is not UTF-8 has an id too."""
    return hashlib.sha256(os.fsencode(relative_path) + b"\n" + content_sha256.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class RawBatch:
    deliveries: pl.DataFrame      # one row per parsed, first-seen delivery
    signals: pl.DataFrame         # one row per signal of those deliveries (VEHICLE_STATE)
    vehicle_errors: pl.DataFrame  # one row per error of VEHICLE_ERROR deliveries
    duplicates: pl.DataFrame      # one row per line whose eventId was already seen
    quarantine: pl.DataFrame      # one row per line that could not be parsed

    def of_batch(self, batch_id: str) -> RawBatch:
        """The part of a multi-file parse that belongs to one batch."""
        return RawBatch(**{name: frame.filter(pl.col("batch_id") == batch_id) for name, frame in self.__dict__.items()})

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


# Times arrive as ISO-8601 strings or epoch numbers in seconds or milliseconds. Any value
# outside years 1-9999 (1e20, 1e300, NaN, Infinity, 'infinity', year 20000) is no time: null,
# never an error, so it is quarantined with a reason. The guard comes before to_timestamp,
# which raises on what it cannot hold.
_TIME_MACROS = [
    "CREATE OR REPLACE TEMP MACRO epoch_seconds(x) AS x / CASE WHEN abs(x) >= 1e11 THEN 1000 ELSE 1 END",
    """CREATE OR REPLACE TEMP MACRO time_in_range(t) AS CASE
        WHEN isfinite(t) AND t BETWEEN TIMESTAMPTZ '0001-01-01 00:00:00+00' AND TIMESTAMPTZ '9999-12-31 23:59:59.999999+00'
        THEN t END""",
    """CREATE OR REPLACE TEMP MACRO json_time(j) AS CASE
        WHEN json_type(j) IN ('UBIGINT', 'BIGINT', 'DOUBLE') THEN to_timestamp(CASE
            WHEN isfinite(TRY_CAST(j AS DOUBLE))
                 AND epoch_seconds(TRY_CAST(j AS DOUBLE)) >= -62135596800   -- 0001-01-01
                 AND epoch_seconds(TRY_CAST(j AS DOUBLE)) < 253402300800     -- 10000-01-01
            THEN epoch_seconds(TRY_CAST(j AS DOUBLE)) END)
        WHEN json_type(j) = 'VARCHAR' THEN time_in_range(TRY_CAST(j ->> '$' AS TIMESTAMPTZ))
    END""",
]

# Each line is parsed once, into this structure (fields of another JSON type become null);
# signal and error lists stay JSON and are parsed once more, only for the deliveries kept.
# Smartcar's pages disagree on where some fields live: `vehicleId` at the top level or
# `data.vehicle.id`, `triggers` at the top level or under `data`; both are read.
_DELIVERY_STRUCTURE = """{
    "eventId": "VARCHAR", "eventType": "VARCHAR", "vehicleId": "VARCHAR", "triggers": "JSON",
    "data": {"vehicle": {"id": "VARCHAR", "make": "VARCHAR", "model": "VARCHAR", "year": "VARCHAR", "vin": "VARCHAR"},
             "user": {"id": "VARCHAR"}, "signals": "JSON", "errors": "JSON", "triggers": "JSON"},
    "meta": {"deliveryId": "VARCHAR", "deliveredAt": "JSON", "webhookId": "VARCHAR", "mode": "VARCHAR",
             "version": "VARCHAR"}
}"""
_SIGNALS_STRUCTURE = """[{"code": "VARCHAR", "name": "VARCHAR", "group": "VARCHAR", "body": "JSON", "status": "JSON",
                         "meta": {"oemUpdatedAt": "JSON", "retrievedAt": "JSON", "fetchedAt": "JSON"}}]"""
_ERRORS_STRUCTURE = """[{"type": "VARCHAR", "code": "VARCHAR", "state": "VARCHAR", "description": "VARCHAR",
                        "resolution": "JSON", "signals": "JSON"}]"""

_ENVELOPE_SQL = f"""
WITH read AS (
    -- One parse per line: from_json takes any valid JSON (fields of another type become
    -- null) and fails only on invalid JSON, which try() turns into null.
    SELECT seq, line_no, text, bad_utf8,
        CASE WHEN NOT bad_utf8 THEN try(from_json(text, '{_DELIVERY_STRUCTURE}')) END AS d
    FROM lines
), checked AS (
    SELECT seq, line_no, text, d,
        -- the text is looked at again only where it must be (a trim or ltrim copies the line)
        CASE WHEN bad_utf8 THEN 'invalid_utf8'
             WHEN d IS NULL THEN CASE
                 WHEN trim(text, chr(32) || chr(9) || chr(10) || chr(11) || chr(12) || chr(13)) = '' THEN 'empty_line'
                 ELSE 'invalid_json' END
             -- valid JSON is an object exactly when it starts with a brace
             WHEN NOT regexp_matches(text, '^[ \t\n\r]*[{{]') THEN 'not_an_object'
        END AS syntax_error
    FROM read
), parsed AS (
    SELECT seq, line_no, text, syntax_error, CASE WHEN syntax_error IS NULL THEN d END AS d
    FROM checked
), envelope AS (
    SELECT seq, line_no, text, syntax_error,
        d.eventId AS event_id,
        d.eventType AS event_type,
        coalesce(d.data.vehicle.id, d.vehicleId) AS vehicle_id,
        d.data.vehicle.make AS make,
        d.data.vehicle.model AS model,
        TRY_CAST(d.data.vehicle.year AS INTEGER) AS year,
        d.data.vehicle.vin AS vin,
        d.data.user.id AS user_id,
        json_time(d.meta.deliveredAt) AS delivered_at,
        d.meta.deliveryId AS delivery_id,
        d.meta.webhookId AS webhook_id,
        d.meta.mode AS mode,
        d.meta.version AS payload_version,
        d.data.signals AS signals,
        d.data.errors AS errors,
        coalesce(d.triggers, d.data.triggers) AS triggers
    FROM parsed
)
-- without the text, which the caller has already: a copy of every line saved. In the
-- lines' order: DuckDB keeps the order of what it scans where nothing sorts or groups.
SELECT * EXCLUDE (syntax_error, text),
    coalesce(syntax_error,
        CASE WHEN event_id IS NULL OR trim(event_id) = '' THEN 'missing_event_id'
             WHEN event_type IS NULL OR event_type NOT IN ('VEHICLE_STATE', 'VEHICLE_ERROR', 'VERIFY')
                 THEN 'unknown_event_type'
             WHEN delivered_at IS NULL THEN 'invalid_delivered_at'
             WHEN event_type <> 'VERIFY' AND (vehicle_id IS NULL OR trim(vehicle_id) = '')
                 THEN 'missing_vehicle_id'
             WHEN event_type = 'VEHICLE_STATE' AND json_type(signals) IS DISTINCT FROM 'ARRAY'
                 THEN 'missing_signals'
             WHEN event_type = 'VEHICLE_ERROR' AND json_type(errors) IS DISTINCT FROM 'ARRAY'
                 THEN 'missing_errors' END) AS reason
FROM envelope
"""

_SIGNALS_SQL = f"""
WITH lists AS (
    SELECT event_id, vehicle_id, delivered_at, from_json(signals, '{_SIGNALS_STRUCTURE}') AS sigs
    FROM accepted WHERE event_type = 'VEHICLE_STATE'
), items AS (
    SELECT event_id, vehicle_id, delivered_at, unnest(sigs) AS sig, generate_subscripts(sigs, 1) - 1 AS signal_index
    FROM lists
), timed AS (
    -- each time read once (a time is most of a signal's cost): whether it is there, and its value
    SELECT *, coalesce(json_type(sig.meta.oemUpdatedAt), 'NULL') <> 'NULL' AS has_oem,
           coalesce(json_type(retrieved), 'NULL') <> 'NULL' AS has_retrieved,
           json_time(sig.meta.oemUpdatedAt) AS oem_updated_at, json_time(retrieved) AS retrieved_at
    FROM (SELECT *,  -- some pages call the time Smartcar read the signal `fetchedAt`
                 CASE WHEN coalesce(json_type(sig.meta.retrievedAt), 'NULL') <> 'NULL' THEN sig.meta.retrievedAt
                      ELSE sig.meta.fetchedAt END AS retrieved
          FROM items)
)
-- in the order of the deliveries and of their signals (nothing here sorts or groups)
SELECT event_id, vehicle_id, signal_index,
    sig.code AS code, sig.name AS name, sig."group" AS "group",
    CASE WHEN json_type(sig.body) <> 'NULL' THEN CAST(sig.body AS VARCHAR) END AS body,
    CASE WHEN json_type(sig.status) = 'VARCHAR' THEN sig.status ->> '$' ELSE sig.status ->> '$.value' END AS status,
    sig.status ->> '$.error.type' AS error_type,
    sig.status ->> '$.error.code' AS error_code,
    sig.status ->> '$.error.description' AS error_description,
    oem_updated_at, retrieved_at, delivered_at,
    -- The contract's time: when the car recorded it, else when it was read, else delivery.
    -- A time that is present but unreadable stays null here and is quarantined downstream.
    CASE WHEN has_oem THEN oem_updated_at WHEN has_retrieved THEN retrieved_at ELSE delivered_at END AS reading_time,
    CASE WHEN has_oem THEN 'oem' WHEN has_retrieved THEN 'retrieved' ELSE 'delivered' END AS time_source
FROM timed
"""

_ERRORS_SQL = f"""
WITH lists AS (
    SELECT event_id, vehicle_id, delivered_at, from_json(errors, '{_ERRORS_STRUCTURE}') AS errs
    FROM accepted WHERE event_type = 'VEHICLE_ERROR'
), items AS (
    SELECT event_id, vehicle_id, delivered_at, unnest(errs) AS err, generate_subscripts(errs, 1) - 1 AS error_index
    FROM lists
)
SELECT event_id, vehicle_id, error_index, delivered_at AS occurred_at,
    err.type AS type, err.code AS code, err.state AS state,
    CASE WHEN json_type(err.resolution) = 'OBJECT' THEN err.resolution ->> '$.type'
         ELSE err.resolution ->> '$' END AS resolution,
    err.description AS description,
    -- the signals the error says it affects (objects with a code, or plain codes): why they are stale
    CASE WHEN json_type(err.signals) = 'ARRAY' THEN list_filter(list_transform(
        from_json(err.signals, '["JSON"]'),
        lambda x: CASE WHEN json_type(x) = 'VARCHAR' THEN x ->> '$' ELSE x ->> '$.code' END),
        lambda x: x IS NOT NULL)
    END AS signals
FROM items
ORDER BY event_id, error_index
"""

# Trigger shapes on Smartcar's pages: {type, signal: {code, ...}}, {type, signal: "code"},
# {code, name, group} (a signal that changed), {code: "FIRST_DELIVERY"}, {type: "FIRST_DELIVERY"}.
_TRIGGERS_SQL = """
WITH items AS (
    SELECT event_id, unnest(from_json(triggers, '["JSON"]')) AS t
    FROM accepted WHERE json_type(triggers) = 'ARRAY'
), typed AS (
    SELECT event_id,
        CASE WHEN json_type(t) = 'VARCHAR' THEN
                 CASE WHEN upper(t ->> '$') = 'FIRST_DELIVERY' THEN 'FIRST_DELIVERY' ELSE 'SIGNAL_UPDATED' END
             WHEN json_type(t, '$.type') = 'VARCHAR' THEN upper(t ->> '$.type')
             WHEN upper(t ->> '$.code') = 'FIRST_DELIVERY' THEN 'FIRST_DELIVERY'
             WHEN t ->> '$.code' IS NOT NULL THEN 'SIGNAL_UPDATED' END AS trigger_type,
        CASE WHEN json_type(t) = 'VARCHAR' AND upper(t ->> '$') <> 'FIRST_DELIVERY' THEN t ->> '$'
             WHEN json_type(t, '$.signal') = 'VARCHAR' THEN t ->> '$.signal'
             WHEN json_type(t, '$.signal') = 'OBJECT' THEN t ->> '$.signal.code'
             WHEN json_type(t, '$.type') IS NULL AND upper(t ->> '$.code') <> 'FIRST_DELIVERY' THEN t ->> '$.code'
        END AS trigger_signal
    FROM items
)
SELECT event_id,
    list(DISTINCT trigger_type ORDER BY trigger_type) FILTER (WHERE trigger_type IS NOT NULL) AS trigger_types,
    list(DISTINCT trigger_signal ORDER BY trigger_signal) FILTER (WHERE trigger_signal IS NOT NULL) AS trigger_signals
FROM typed GROUP BY event_id
"""


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection set up for parsing (UTC, the time macros); reuse it
    across calls, setting one up costs more than parsing a small file."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'").fetchall()
    for macro in _TIME_MACROS:
        con.execute(macro).fetchall()
    return con


_per_thread = threading.local()


def thread_connection() -> duckdb.DuckDBPyConnection:
    """This thread's parsing connection (`connect`), made on first use: a DuckDB connection
    serves one thread at a time, and a day's shards would otherwise each set one up."""
    con = getattr(_per_thread, "con", None)
    if con is None:
        con = _per_thread.con = connect()
    return con


# DuckDB splits the scan of an Arrow table between its threads by record batch: a frame
# registered as it is (one batch) is parsed on one thread, however many cores there are.
SCAN_BATCH_ROWS = 2048


def register_in_batches(con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> None:
    """Register a frame as the view `name`, in record batches that DuckDB scans in parallel."""
    table = frame.to_arrow()
    con.register(name, pa.Table.from_batches(table.to_batches(max_chunksize=SCAN_BATCH_ROWS), table.schema))


def parse_lines(lines: pl.DataFrame, seen_event_ids: pl.Series | None = None,
                con: duckdb.DuckDBPyConnection | None = None) -> RawBatch:
    """Judge every line of one or more landing files (`read_landing_lines`, concatenated in
    the order the files are ingested). `seen_event_ids` are the eventIds of deliveries
    already in the lake: a line that repeats one, or an earlier line, is a duplicate."""
    own = con is None
    con = con or connect()
    try:
        register_in_batches(con, "lines", lines.select("line_no", "text", "bad_utf8").with_row_index("seq"))
        envelope = con.sql(_ENVELOPE_SQL).pl()
        if not envelope.get_column("seq").is_sorted():  # a guard: each line beside its own envelope
            envelope = envelope.sort("seq")
        judged = pl.concat([lines.select("batch_id", "source_file", "file_landed_on", "text"),
                            envelope.drop("seq")], how="horizontal")
        # The day a line landed: its delivery time, else its file's latest delivery, else the file's own.
        judged = judged.with_columns(landed_on=pl.coalesce(
            pl.col("delivered_at").dt.date(),
            pl.col("delivered_at").max().over("batch_id").dt.date(),
            pl.col("file_landed_on"),
        ))
        quarantine = judged.filter(pl.col("reason").is_not_null()).select(
            "batch_id", "source_file", "line_no", "landed_on", "event_id", "vehicle_id",
            pl.col("text").alias("raw_text"), "reason")
        accepted = judged.filter(pl.col("reason").is_null())
        seen_before = (pl.col("event_id").is_in(seen_event_ids.implode())
                       if seen_event_ids is not None and len(seen_event_ids) else pl.lit(False))
        accepted = accepted.with_columns(duplicate=~pl.col("event_id").is_first_distinct() | seen_before)
        duplicates = accepted.filter("duplicate").select(
            "batch_id", "source_file", "line_no", "landed_on", "event_id", "vehicle_id", "delivered_at")
        accepted = accepted.filter(~pl.col("duplicate"))

        register_in_batches(con, "accepted", accepted.select("event_id", "event_type", "vehicle_id", "delivered_at", "signals", "errors",
                                                 "triggers"))
        signals = con.sql(_SIGNALS_SQL).pl()
        errors = con.sql(_ERRORS_SQL).pl().with_columns(pl.col("signals").cast(pl.List(pl.String)))
        triggers = con.sql(_TRIGGERS_SQL).pl()
    finally:
        con.unregister("lines")
        con.unregister("accepted")
        if own:
            con.close()

    landed = accepted.select("event_id", "landed_on", "batch_id")
    signals = signals.join(landed, on="event_id", how="left")
    errors = errors.join(landed, on="event_id", how="left")
    signal_counts = signals.group_by("event_id").len("signal_count")
    deliveries = (
        accepted.join(signal_counts, on="event_id", how="left")
        .join(triggers, on="event_id", how="left")
        .with_columns(pl.col("signal_count").fill_null(0).cast(pl.Int32),
                      pl.col("trigger_types", "trigger_signals").cast(pl.List(pl.String)))
        # a first delivery is the car's state when it was subscribed, not a change of state
        .with_columns(pl.col("trigger_types").list.contains("FIRST_DELIVERY").fill_null(False).alias("first_delivery"))
        .select("event_id", "event_type", "vehicle_id", "user_id", "make", "model", "year", "vin",
                "delivered_at", "delivery_id", "webhook_id", "mode", "payload_version", "signal_count",
                "trigger_types", "trigger_signals", "first_delivery",
                "landed_on", "source_file", "line_no", "batch_id", pl.col("text").alias("payload"))
    )
    return RawBatch(deliveries=deliveries, signals=signals, vehicle_errors=errors,
                    duplicates=duplicates, quarantine=quarantine)


def empty_batch() -> RawBatch:
    """A batch of no lines: the schemas of every raw table."""
    return parse_lines(pl.DataFrame(schema=LINES_SCHEMA))
