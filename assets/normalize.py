"""Raw signals → typed readings in SI units, signal errors, and quarantined signals.

Every raw signal ends as exactly one of: one or more readings (a tyre signal gives four, a
location two), a signal error (the API said it could not read it), or a quarantined signal
with a reason. A signal is judged whole: one bad tyre in four quarantines the signal.

DuckDB reads the JSON bodies (its `json_type` tells a number from a string that looks like
one, row by row); Polars does the normalization: units, ranges, reshaping.
"""

from __future__ import annotations


from dataclasses import dataclass

import polars as pl

from assets.parsing import register_in_batches, thread_connection
from assets.signal_catalog import ASSUMED, BODY_TEXTS, SIGNALS, TIRE_POSITIONS, UNIT_FACTORS
from storage.partitions import plausible_reading_time, reading_day

NUMERIC_JSON = ["UBIGINT", "BIGINT", "DOUBLE"]

READINGS_SCHEMA = {
    "event_id": pl.String, "signal_index": pl.Int64, "vehicle_id": pl.String,
    "reading_time": pl.Datetime("us", "UTC"), "day": pl.Date, "time_source": pl.String,
    "metric": pl.String, "component": pl.String, "value": pl.Float64,
    "source_code": pl.String, "source_unit": pl.String, "noted_at": pl.Datetime("us", "UTC"),
    "delivered_at": pl.Datetime("us", "UTC"), "landed_on": pl.Date, "batch_id": pl.String,
}
SIGNAL_ERRORS_COLUMNS = [
    "event_id", "signal_index", "vehicle_id", "reading_time", "day", "code", "name", "status",
    "error_type", "error_code", "error_description", "delivered_at", "landed_on", "batch_id",
]
QUARANTINE_COLUMNS = [
    "event_id", "signal_index", "vehicle_id", "reading_time", "day", "code", "body", "reason",
    "detail", "delivered_at", "landed_on", "batch_id",
]


@dataclass(frozen=True)
class NormalizedSignals:
    readings: pl.DataFrame
    signal_errors: pl.DataFrame
    quarantine: pl.DataFrame


# Body fields that may carry a signal's number (which one is the catalog's `field` /
# `alt_field`), and text fields kept beside a value.
NUMBER_FIELDS = ("value", "capacity", "percentage", "activeLimit")
TEXT_FIELDS = ("source", "locationType", "status")


# Every body field a shape reads, extracted in one parse of the body: `json_extract` with a
# list of paths parses the document once, where a `json_type(body, path)` per field parsed it
# again for each.
BODY_PATHS = (*NUMBER_FIELDS, *TEXT_FIELDS, "unit", "latitude", "longitude", "heading", "values")


def _field(name: str) -> str:
    return f"f[{BODY_PATHS.index(name) + 1}]"


def _number_sql(name: str) -> str:
    return (f"CASE WHEN json_type({_field(name)}) IN ('UBIGINT', 'BIGINT', 'DOUBLE') "
            f"THEN CAST({_field(name)} AS DOUBLE) END")


def _text_sql(name: str) -> str:
    return f"CASE WHEN json_type({_field(name)}) = 'VARCHAR' THEN {_field(name)} ->> '$' END"


_BODY_FIELDS_SQL = f"""
SELECT row_id, body_type,
    {", ".join(f'json_type({_field(f)}) AS "{f}_type", {_number_sql(f)} AS "{f}_number"' for f in NUMBER_FIELDS)},
    CASE WHEN json_type({_field("value")}) = 'BOOLEAN' THEN CAST({_field("value")} AS BOOLEAN) END AS value_bool,
    {_text_sql("value")} AS value_text,
    {", ".join(f'{_text_sql(f)} AS "{f}_text"' for f in TEXT_FIELDS)},
    json_type({_field("status")}) AS status_type,
    json_type({_field("unit")}) AS unit_type,
    {_field("unit")} ->> '$' AS unit,
    json_type({_field("latitude")}) AS latitude_type,
    {_number_sql("latitude")} AS latitude,
    json_type({_field("longitude")}) AS longitude_type,
    {_number_sql("longitude")} AS longitude,
    {_number_sql("heading")} AS heading,
    json_type({_field("values")}) AS values_type
FROM (SELECT row_id, json_type(body) AS body_type,
             json_extract(body, [{", ".join(f"'$.{f}'" for f in BODY_PATHS)}]) AS f
      FROM bodies)
"""

_ITEMS_SQL = """
WITH items AS (
    SELECT row_id,
        unnest(json_extract(body, '$.values[*]')) AS item,
        generate_subscripts(json_extract(body, '$.values[*]'), 1) - 1 AS item_index
    FROM bodies WHERE json_type(body, '$.values') = 'ARRAY'
)
SELECT row_id, item_index,
    CASE WHEN json_type(item, '$.row') IN ('UBIGINT', 'BIGINT') THEN TRY_CAST(item -> '$.row' AS INTEGER) END AS "row",
    CASE WHEN json_type(item, '$.column') IN ('UBIGINT', 'BIGINT') THEN TRY_CAST(item -> '$.column' AS INTEGER) END AS "column",
    json_type(item, '$.tirePressure') AS pressure_type,
    CASE WHEN json_type(item, '$.tirePressure') IN ('UBIGINT', 'BIGINT', 'DOUBLE') THEN CAST(item -> '$.tirePressure' AS DOUBLE) END AS pressure,
    json_type(item, '$.code') AS dtc_type,
    item ->> '$.code' AS dtc_code,
    json_time(item -> '$.timestamp') AS dtc_timestamp,
    upper(item ->> '$.type') AS limit_kind,
    CASE WHEN json_type(item, '$.limit') IN ('UBIGINT', 'BIGINT', 'DOUBLE') THEN TRY_CAST(item -> '$.limit' AS DOUBLE) END AS limit_number,
    json_type(item) AS item_type,
    item ->> '$.id' AS item_id,
    json_type(item, '$.time') AS item_time_type,
    json_time(item -> '$.time') AS item_time,
    json_type(item, '$.odometer') AS item_odometer_type,
    CASE WHEN json_type(item, '$.odometer') IN ('UBIGINT', 'BIGINT', 'DOUBLE') THEN CAST(item -> '$.odometer' AS DOUBLE) END AS item_odometer,
    json_type(item, '$.startTime') AS item_start_type,
    json_time(item -> '$.startTime') AS item_start,
    json_type(item, '$.endTime') AS item_end_type,
    json_time(item -> '$.endTime') AS item_end,
    json_type(item, '$.energyAdded') AS item_energy_type,
    CASE WHEN json_type(item, '$.energyAdded') IN ('UBIGINT', 'BIGINT', 'DOUBLE') THEN CAST(item -> '$.energyAdded' AS DOUBLE) END AS item_energy,
    json_type(item, '$.startStateOfCharge') AS item_soc_start_type,
    CASE WHEN json_type(item, '$.startStateOfCharge') IN ('UBIGINT', 'BIGINT', 'DOUBLE') THEN CAST(item -> '$.startStateOfCharge' AS DOUBLE) END AS item_soc_start,
    json_type(item, '$.endStateOfCharge') AS item_soc_end_type,
    CASE WHEN json_type(item, '$.endStateOfCharge') IN ('UBIGINT', 'BIGINT', 'DOUBLE') THEN CAST(item -> '$.endStateOfCharge' AS DOUBLE) END AS item_soc_end
FROM items
ORDER BY row_id, item_index
"""


def _read_bodies(signals: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    con = thread_connection()  # UTC, and json_time: a time no type can hold is null, never an error
    try:
        register_in_batches(con, "bodies", signals.select("row_id", "body"))
        return con.sql(_BODY_FIELDS_SQL).pl(), con.sql(_ITEMS_SQL).pl()
    finally:
        con.unregister("bodies")


def _catalog() -> pl.DataFrame:
    return pl.DataFrame(
        [{"code": s.code, "shape": s.shape, "metric": s.metric, "field": s.field, "alt_field": s.alt_field,
          "quantity": s.quantity, "default_unit": s.default_unit, "levels": list(s.levels), "low": s.low,
          "high": s.high} for s in SIGNALS.values()],
        schema={"code": pl.String, "shape": pl.String, "metric": pl.String, "field": pl.String,
                "alt_field": pl.String, "quantity": pl.String, "default_unit": pl.String,
                "levels": pl.List(pl.String), "low": pl.Float64, "high": pl.Float64},
    )


def _units() -> pl.DataFrame:
    rows = [(q, u, f) for q, units in UNIT_FACTORS.items() for u, f in units.items()]
    return pl.DataFrame(rows, schema={"quantity": pl.String, "unit_key": pl.String, "factor": pl.Float64},
                        orient="row")


def _number_reason(type_col: str, number_col: str) -> pl.Expr:
    return (
        pl.when(pl.col(type_col).is_null() | (pl.col(type_col) == "NULL")).then(pl.lit("missing_value"))
        .when(~pl.col(type_col).is_in(NUMERIC_JSON) | ~pl.col(number_col).is_finite()).then(pl.lit("wrong_type"))
    )


def _absent(type_col: str) -> pl.Expr:
    return pl.col(type_col).is_null() | (pl.col(type_col) == "NULL")


def _unit_reason() -> pl.Expr:
    return (
        pl.when(_absent("unit_type") & pl.col("default_unit").is_null()).then(pl.lit("missing_unit"))
        .when(pl.col("unit_type") != "VARCHAR").then(pl.lit("wrong_type"))
        .when(pl.col("factor").is_null()).then(pl.lit("unknown_unit"))
    )


def _in_range(value: pl.Expr) -> pl.Expr:
    return value.is_between(pl.col("low"), pl.col("high"))


def normalize_signals(signals: pl.DataFrame) -> NormalizedSignals:
    """Normalize the raw signals of any set of deliveries (in practice: one day partition)."""
    if "ingested_at" not in signals.columns:  # signals not read from the lake: received when delivered
        signals = signals.with_columns(ingested_at=pl.lit(None, pl.Datetime("us", "UTC")))
    signals = signals.with_row_index("row_id").with_columns(pl.col("row_id").cast(pl.Int64))
    status_ok = pl.col("status").is_null() | (pl.col("status").str.to_uppercase() == "SUCCESS")
    triage = (
        pl.when(~status_ok).then(pl.lit("signal_error"))
        .when(pl.col("body").is_null() | (pl.col("body") == "null")).then(pl.lit("missing_body"))
        .when(pl.col("reading_time").is_null()).then(pl.lit("invalid_timestamp"))
        .when(~plausible_reading_time()).then(pl.lit("implausible_timestamp"))
        .when(~pl.col("code").is_in(list(SIGNALS))).then(pl.lit("unsupported_signal"))
    )
    signals = signals.with_columns(triage.alias("reason"), pl.lit(None, pl.String).alias("detail"))
    signal_errors = signals.filter(pl.col("reason") == "signal_error")
    early = signals.filter(pl.col("reason").is_not_null() & (pl.col("reason") != "signal_error"))
    candidates = signals.filter(pl.col("reason").is_null()).drop("reason", "detail")

    fields, items = _read_bodies(candidates)
    candidates = (
        candidates.join(fields, on="row_id", how="left")
        .join(_catalog(), on="code", how="left")
        # a body without a unit is in the signal's documented unit, and says it was assumed
        .with_columns(pl.when(_absent("unit_type")).then(pl.col("default_unit")).otherwise(pl.col("unit"))
                      .str.strip_chars().str.to_lowercase().alias("unit_key"),
                      pl.when(_absent("unit_type") & pl.col("default_unit").is_not_null())
                      .then(pl.col("default_unit") + ASSUMED).otherwise(pl.col("unit")).alias("unit"))
        .join(_units(), on=["quantity", "unit_key"], how="left")
    )
    candidates, not_objects = _split(candidates, pl.when(pl.col("body_type") != "OBJECT").then(pl.lit("malformed_body")))
    readings, judged = [], [not_objects]
    for shape, part in candidates.partition_by("shape", as_dict=True).items():
        good, bad = _SHAPES[shape[0]](part, items)
        readings.append(good)
        judged.append(bad)

    quarantine = pl.concat(
        [early.select(QUARANTINE_COLUMNS_RAW)] + [b.select(QUARANTINE_COLUMNS_RAW) for b in judged],
        how="vertical_relaxed",
    )
    readings_frame = (
        pl.concat([r.select(list(READINGS_SCHEMA_RAW)) for r in readings], how="vertical_relaxed")
        if readings else pl.DataFrame(schema=READINGS_SCHEMA_RAW)
    )
    return NormalizedSignals(
        readings=_finish_readings(readings_frame),
        signal_errors=signal_errors.with_columns(day=reading_day()).select(SIGNAL_ERRORS_COLUMNS),
        quarantine=quarantine.with_columns(day=reading_day()).select(QUARANTINE_COLUMNS),
    )


# How a day's readings are stored: by vehicle and time (row-group statistics then skip
# whole groups for a query on some vehicles).
READINGS_ORDER = ("vehicle_id", "reading_time", "metric", "component")
# Columns carried through the shape handlers, before the day is attached.
READINGS_SCHEMA_RAW = {k: v for k, v in READINGS_SCHEMA.items() if k != "day"}
QUARANTINE_COLUMNS_RAW = [c for c in QUARANTINE_COLUMNS if c != "day"] + ["ingested_at"]  # for the day


def _finish_readings(readings: pl.DataFrame) -> pl.DataFrame:
    return (
        readings.with_columns(day=pl.col("reading_time").dt.date())
        .select(list(READINGS_SCHEMA))
        .cast(READINGS_SCHEMA)  # type: ignore[arg-type]
        .sort(*READINGS_ORDER, nulls_last=True)
    )


def _split(frame: pl.DataFrame, reason: pl.Expr) -> tuple[pl.DataFrame, pl.DataFrame]:
    frame = frame.with_columns(reason.alias("reason"), pl.lit(None, pl.String).alias("detail"))
    return frame.filter(pl.col("reason").is_null()), frame.filter(pl.col("reason").is_not_null())


def _reading(metric: pl.Expr, value: pl.Expr, component: pl.Expr | None = None,
             unit: pl.Expr | None = None, noted_at: pl.Expr | None = None) -> list[pl.Expr]:
    return [
        metric.alias("metric"),
        value.cast(pl.Float64).alias("value"),
        (component if component is not None else pl.lit(None, pl.String)).alias("component"),
        pl.col("code").alias("source_code"),
        (unit if unit is not None else pl.lit(None, pl.String)).alias("source_unit"),
        (noted_at if noted_at is not None else pl.lit(None, pl.Datetime("us", "UTC"))).alias("noted_at"),
    ]


def _field_column(which: str, kind: str) -> pl.Expr:
    """The `kind` ("type" or "number") column of the body field that the catalog's `which`
    ("field" or "alt_field") names."""
    out = pl.lit(None, pl.String if kind == "type" else pl.Float64)
    for name in NUMBER_FIELDS:
        out = pl.when(pl.col(which) == name).then(pl.col(f"{name}_{kind}")).otherwise(out)
    return out


def _texts(good: pl.DataFrame) -> pl.DataFrame:
    """The text fields the analysts keep (BODY_TEXTS), one reading each where present."""
    parts = [good.filter((pl.col("code") == code) & pl.col(f"{name}_text").is_not_null())
             .with_columns(_reading(pl.lit(metric), pl.lit(None, pl.Float64), component=pl.col(f"{name}_text")))
             for (code, name), metric in BODY_TEXTS.items()]
    return pl.concat(parts, how="diagonal_relaxed")


def _numbers(part: pl.DataFrame, _items: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    use_alt = _absent("_primary_type") & pl.col("alt_field").is_not_null()
    part = part.with_columns(_field_column("field", "type").alias("_primary_type")).with_columns(
        raw_type=pl.when(use_alt).then(_field_column("alt_field", "type")).otherwise(pl.col("_primary_type")),
        raw_number=pl.when(use_alt).then(_field_column("alt_field", "number"))
        .otherwise(_field_column("field", "number")),
    ).with_columns(converted=pl.col("raw_number") * pl.col("factor"))
    reason = pl.coalesce(
        _number_reason("raw_type", "raw_number"),
        _unit_reason(),
        pl.when(~_in_range(pl.col("converted"))).then(pl.lit("out_of_range")),
    )
    good, bad = _split(part, reason)
    bad = bad.with_columns(detail=pl.format("{} {}", pl.col("raw_number"), pl.col("unit")))
    values = good.with_columns(_reading(pl.col("metric"), pl.col("converted"), unit=pl.col("unit")))
    return pl.concat([values, _texts(good)], how="diagonal_relaxed"), bad


def _limits(part: pl.DataFrame, items: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Charge limits: the active limit where the car says which applies, else the global one."""
    global_limit = (items.filter(pl.col("limit_kind") == "GLOBAL").group_by("row_id")
                    .agg(pl.col("limit_number").first().alias("global_limit")))
    part = part.join(global_limit, on="row_id", how="left").with_columns(
        pl.when(pl.col("activeLimit_type").is_in(NUMERIC_JSON)).then(pl.col("activeLimit_number"))
        .otherwise(pl.col("global_limit")).alias("limit_pct"))
    reason = pl.coalesce(
        pl.when(pl.col("limit_pct").is_null()).then(pl.lit("missing_value")),
        _unit_reason(),
        pl.when(~_in_range(pl.col("limit_pct") * pl.col("factor"))).then(pl.lit("out_of_range")),
    )
    good, bad = _split(part, reason)
    return good.with_columns(_reading(pl.col("metric"), pl.col("limit_pct") * pl.col("factor"),
                                      unit=pl.col("unit"))), bad


def _levels(part: pl.DataFrame, _items: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A documented status word (GOOD / WARN / BAD): its index is the value, the word the component."""
    indexed = pl.DataFrame([(sp.code, name, i) for sp in SIGNALS.values() for i, name in enumerate(sp.levels)],
                           schema={"code": pl.String, "_level": pl.String, "_index": pl.Int64}, orient="row")
    part = (part.with_columns(pl.col("value_text").str.strip_chars().str.to_uppercase().alias("_level"))
            .join(indexed, on=["code", "_level"], how="left"))
    reason = (
        pl.when(_absent("value_type")).then(pl.lit("missing_value"))
        .when(pl.col("value_type") != "VARCHAR").then(pl.lit("wrong_type"))
        .when(pl.col("_index").is_null()).then(pl.lit("unknown_value"))
    )
    good, bad = _split(part, reason)
    return good.with_columns(_reading(pl.col("metric"), pl.col("_index"), component=pl.col("_level"))), bad


def _systems(part: pl.DataFrame, _items: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A diagnostics system's status (`{status: OK | ALERT}`): the system is the component, the
    index of the status word the value."""
    indexed = pl.DataFrame([(sp.code, name, i) for sp in SIGNALS.values() for i, name in enumerate(sp.levels)],
                           schema={"code": pl.String, "_level": pl.String, "_index": pl.Int64}, orient="row")
    part = (part.with_columns(pl.col("status_text").str.strip_chars().str.to_uppercase().alias("_level"))
            .join(indexed, on=["code", "_level"], how="left"))
    reason = (
        pl.when(_absent("status_type")).then(pl.lit("missing_value"))
        .when(pl.col("status_type") != "VARCHAR").then(pl.lit("wrong_type"))
        .when(pl.col("_index").is_null()).then(pl.lit("unknown_value"))
    )
    good, bad = _split(part, reason)
    system = pl.col("code").str.split_exact("-", 1).struct.field("field_1")
    return good.with_columns(_reading(pl.col("metric"), pl.col("_index"), component=system)), bad


def _services(part: pl.DataFrame, items: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Service records: their number (`service_record_count`), and per record a `service_at` reading (its id as component, its time as
    noted_at) and, where it has one, its odometer (`service_odometer_km`). A record that is not
    an object, has a time that is no time, or an odometer that is not a number in range
    quarantines the signal."""
    present = ~(pl.col("item_odometer_type").is_null() | (pl.col("item_odometer_type") == "NULL"))
    timed = ~(pl.col("item_time_type").is_null() | (pl.col("item_time_type") == "NULL"))
    item_reason = pl.coalesce(
        pl.when(pl.col("item_type") != "OBJECT").then(pl.lit("malformed_body")),
        pl.when(timed & pl.col("item_time").is_null()).then(pl.lit("invalid_timestamp")),
        pl.when(present & ~pl.col("item_odometer_type").is_in(NUMERIC_JSON)).then(pl.lit("wrong_type")),
        pl.when(present & ~_in_range(pl.col("item_odometer") * pl.col("factor"))).then(pl.lit("out_of_range")),
    )
    first_bad = _item_reasons(part, items, item_reason)
    part = part.join(first_bad, on="row_id", how="left")
    reason = pl.coalesce(
        pl.when(pl.col("values_type").is_null() | (pl.col("values_type") == "NULL")).then(pl.lit("missing_value")),
        pl.when(pl.col("values_type") != "ARRAY").then(pl.lit("wrong_type")),
        _unit_reason(),
        pl.col("item_reason"),
    )
    good, bad = _split(part, reason)
    # how many records the list holds (none is an answer too: a car never serviced)
    counts = good.join(items.group_by("row_id").len("n"), on="row_id", how="left").with_columns(
        _reading(pl.lit("service_record_count"), pl.col("n").fill_null(0)))
    records = good.join(items.select("row_id", "item_id", "item_time", "item_odometer"), on="row_id", how="inner")
    at = records.with_columns(_reading(pl.lit("service_at"), pl.lit(None, pl.Float64), component=pl.col("item_id"),
                                       noted_at=pl.col("item_time")))
    odometer = records.filter(pl.col("item_odometer").is_not_null()).with_columns(
        _reading(pl.col("metric"), pl.col("item_odometer") * pl.col("factor"), component=pl.col("item_id"),
                 unit=pl.col("unit"), noted_at=pl.col("item_time")))
    return pl.concat([counts, at, odometer], how="diagonal_relaxed"), bad


def _charge_records(part: pl.DataFrame, items: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The car's own charge records: their number (`charge_record_count`), and per record
    (component: its id, else its start time) when it
    started and ended (`charge_record_started_at`, `charge_record_ended_at`: the time as
    noted_at), the energy it added (`charge_record_energy_kwh`) and its states of charge at
    either end, each where the record has it. A record that is not an object, has no start, a
    time that is no time, or a number that is not one in range quarantines the signal."""
    def present(column: str) -> pl.Expr:
        return ~_absent(column)

    numbers = (("item_energy_type", pl.col("item_energy") * pl.col("factor"), 0, 500),
               ("item_soc_start_type", pl.col("item_soc_start"), 0, 100),
               ("item_soc_end_type", pl.col("item_soc_end"), 0, 100))
    not_numbers = pl.any_horizontal(present(t) & ~pl.col(t).is_in(NUMERIC_JSON) for t, *_ in numbers)
    out_of_range = pl.any_horizontal(present(t) & ~v.is_between(low, high) for t, v, low, high in numbers)

    item_reason = pl.coalesce(
        pl.when(pl.col("item_type") != "OBJECT").then(pl.lit("malformed_body")),
        pl.when(~present("item_start_type")).then(pl.lit("missing_value")),
        pl.when(pl.col("item_start").is_null() | (present("item_end_type") & pl.col("item_end").is_null()))
        .then(pl.lit("invalid_timestamp")),
        pl.when(not_numbers).then(pl.lit("wrong_type")),
        pl.when(out_of_range).then(pl.lit("out_of_range")),
    )
    part = part.join(_item_reasons(part, items, item_reason), on="row_id", how="left")
    reason = pl.coalesce(
        pl.when(_absent("values_type")).then(pl.lit("missing_value")),
        pl.when(pl.col("values_type") != "ARRAY").then(pl.lit("wrong_type")),
        _unit_reason(),
        pl.col("item_reason"),
    )
    good, bad = _split(part, reason)
    records = good.join(items, on="row_id", how="inner").with_columns(
        pl.coalesce("item_id", pl.col("item_start").dt.strftime("%Y-%m-%dT%H:%M:%SZ")).alias("record"))
    record = pl.col("record")
    parts = [
        # how many records the list holds (none is an answer too, and the signal's outcome)
        good.join(items.group_by("row_id").len("n"), on="row_id", how="left").with_columns(
            _reading(pl.lit("charge_record_count"), pl.col("n").fill_null(0))),
        records.with_columns(_reading(pl.lit("charge_record_started_at"), pl.lit(None, pl.Float64), component=record,
                                      noted_at=pl.col("item_start"))),
        records.filter(pl.col("item_end").is_not_null()).with_columns(_reading(
            pl.lit("charge_record_ended_at"), pl.lit(None, pl.Float64), component=record, noted_at=pl.col("item_end"))),
        records.filter(pl.col("item_energy").is_not_null()).with_columns(_reading(
            pl.col("metric"), pl.col("item_energy") * pl.col("factor"), component=record, unit=pl.col("unit"),
            noted_at=pl.col("item_start"))),
        *(records.filter(pl.col(column).is_not_null()).with_columns(_reading(
            pl.lit(metric), pl.col(column), component=record, unit=pl.lit("percent"), noted_at=pl.col("item_start")))
          for column, metric in (("item_soc_start", "charge_record_soc_start_pct"),
                                 ("item_soc_end", "charge_record_soc_end_pct"))),
    ]
    return pl.concat(parts, how="diagonal_relaxed"), bad


def _words(part: pl.DataFrame, _items: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """An open status word (no documented list): kept upper-cased as the component, value null."""
    word = pl.col("value_text").str.strip_chars().str.to_uppercase()
    reason = (
        pl.when(_absent("value_type")).then(pl.lit("missing_value"))
        .when(pl.col("value_type") != "VARCHAR").then(pl.lit("wrong_type"))
        .when(word.str.len_chars() == 0).then(pl.lit("missing_value"))
    )
    good, bad = _split(part, reason)
    return good.with_columns(_reading(pl.col("metric"), pl.lit(None, pl.Float64), component=word)), bad


def _booleans(part: pl.DataFrame, _items: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    reason = (
        pl.when(pl.col("value_type").is_null() | (pl.col("value_type") == "NULL")).then(pl.lit("missing_value"))
        .when(pl.col("value_type") != "BOOLEAN").then(pl.lit("wrong_type"))
    )
    good, bad = _split(part, reason)
    return good.with_columns(_reading(pl.col("metric"), pl.col("value_bool"))), bad


def _locations(part: pl.DataFrame, _items: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    reason = pl.coalesce(
        _number_reason("latitude_type", "latitude"),
        _number_reason("longitude_type", "longitude"),
        pl.when(~pl.col("latitude").is_between(-90, 90) | ~pl.col("longitude").is_between(-180, 180))
        .then(pl.lit("out_of_range")),
    )
    good, bad = _split(part, reason)
    latitude = good.with_columns(_reading(pl.lit("latitude_deg"), pl.col("latitude")))
    longitude = good.with_columns(_reading(pl.lit("longitude_deg"), pl.col("longitude")))
    heading = good.filter(pl.col("heading").is_between(0, 360)).with_columns(
        _reading(pl.lit("heading_deg"), pl.col("heading")))
    return pl.concat([latitude, longitude, heading, _texts(good)], how="diagonal_relaxed"), bad


def _item_reasons(part: pl.DataFrame, items: pl.DataFrame, item_reason: pl.Expr) -> pl.DataFrame:
    """The first bad item of each signal, as the signal's reason (null if all items are good)."""
    mine = items.join(part.select("row_id", "factor", "low", "high"), on="row_id", how="semi")
    mine = mine.join(part.select("row_id", "factor", "low", "high"), on="row_id", how="left")
    return (
        mine.with_columns(item_reason.alias("item_reason"))
        .group_by("row_id").agg(pl.col("item_reason").drop_nulls().first())
    )


def _tires(part: pl.DataFrame, items: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    positions = pl.DataFrame(
        [(r, c, name) for (r, c), name in TIRE_POSITIONS.items()],
        schema={"row": pl.Int32, "column": pl.Int32, "position": pl.String}, orient="row",
    )
    items = items.join(positions, on=["row", "column"], how="left")
    item_reason = pl.coalesce(
        pl.when(pl.col("position").is_null()).then(pl.lit("malformed_body")),
        _number_reason("pressure_type", "pressure"),
        pl.when(~_in_range(pl.col("pressure") * pl.col("factor"))).then(pl.lit("out_of_range")),
    )
    first_bad = _item_reasons(part, items, item_reason)
    duplicated = items.group_by("row_id").agg(repeated=pl.col("position").is_duplicated().any())
    part = part.join(first_bad, on="row_id", how="left").join(duplicated, on="row_id", how="left")
    reason = pl.coalesce(
        pl.when(pl.col("values_type") != "ARRAY").then(
            pl.when(pl.col("values_type").is_null()).then(pl.lit("missing_value")).otherwise(pl.lit("wrong_type"))),
        _unit_reason(),
        pl.when(pl.col("repeated").is_null()).then(pl.lit("missing_value")),  # an empty list
        pl.when(pl.col("repeated")).then(pl.lit("malformed_body")),
        pl.col("item_reason"),
    )
    good, bad = _split(part, reason)
    exploded = good.join(items.select("row_id", "position", "pressure"), on="row_id", how="inner")
    return exploded.with_columns(_reading(pl.col("metric"), pl.col("pressure") * pl.col("factor"),
                                          component=pl.col("position"), unit=pl.col("unit"))), bad


def _dtcs(part: pl.DataFrame, items: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    item_reason = pl.when(pl.col("dtc_type") != "VARCHAR").then(pl.lit("wrong_type"))
    first_bad = _item_reasons(part, items, item_reason)
    part = part.join(first_bad, on="row_id", how="left")
    reason = pl.coalesce(
        pl.when(pl.col("values_type").is_null()).then(pl.lit("missing_value")),
        pl.when(pl.col("values_type") != "ARRAY").then(pl.lit("wrong_type")),
        pl.col("item_reason"),
    )
    good, bad = _split(part, reason)
    counts = items.group_by("row_id").len("n")
    totals = good.join(counts, on="row_id", how="left").with_columns(
        _reading(pl.lit("dtc_count"), pl.col("n").fill_null(0)))
    codes = good.join(items.select("row_id", "dtc_code", "dtc_timestamp"), on="row_id", how="inner").with_columns(
        _reading(pl.lit("dtc_code"), pl.lit(None, pl.Float64), component=pl.col("dtc_code"),
                 noted_at=pl.col("dtc_timestamp")))
    return pl.concat([totals, codes], how="diagonal_relaxed"), bad


_SHAPES = {"number": _numbers, "boolean": _booleans, "location": _locations, "tires": _tires, "dtc": _dtcs,
           "limits": _limits, "level": _levels, "word": _words,
           "system": _systems, "services": _services, "charge_records": _charge_records}
