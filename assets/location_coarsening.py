"""Precise locations older than the retention are coarsened in the lake to the coarse area
the marts use.

The rule: a latitude or longitude becomes the centre of its cell on the marts' area grid
(`AREA_CELL_DEG` degrees, about 11 km, see assets/marts/charging/places.py), written to
`AREA_DIGITS` decimals: 37.774929, -122.419416 becomes 37.75, -122.45. The centre, not the
corner, so that the marts' `area` of a coarsened reading is the area of the original and
coarsening it again changes nothing (it is well inside its cell, never on a rounding edge).

Where the lake keeps coordinates, and the time that says how old they are:

| table | what holds them | age by |
|---|---|---|
| `readings` | `value` of `latitude_deg` / `longitude_deg` | `reading_time` |
| `raw/signals` | `body` (JSON text) | `reading_time`, else `delivered_at` |
| `quarantine/readings` | `body` (JSON text) | `reading_time`, else `delivered_at` |
| `raw/deliveries` | `payload` (the line as received) | the earliest reading time of its signals, else `delivered_at` |
| `quarantine/deliveries` | `raw_text` (the line as received) | `landed_on` (no trusted reading time) |

In text, every number (or number in a string) that follows a `"latitude"` or `"longitude"`
key is replaced by its coarse value, wherever it is, and nothing else of the text changes,
so a malformed line is coarsened as well as a valid one. Each table changes in one commit,
only when a row still holds a precise coordinate (running again commits nothing), and is
then vacuumed within the lake's retention (`LakeResource.retention_hours`), its transaction
log too: the log's file statistics (each column's minimum and maximum) of the replaced
files hold coordinates, so log entries older than the retention are deleted after a
checkpoint (the tables keep no history beyond the retention).

Landing files are not touched: they are the sources' record of what was received (see the
README, "On disk").
"""

# No `from __future__ import annotations`: Dagster reads the config type from the annotation.

import math
import re
from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl

from assets.marts.charging.places import AREA_CELL_DEG
from assets.readings import readings
from storage import tables
from storage.layout import RawLayout, ReadingsLayout
from storage.resources import LakeResource

AREA_DIGITS = 2  # the centre of a 0.1° cell has two decimals
COORDINATE_METRICS = ("latitude_deg", "longitude_deg")

_COORDINATE_KEY = r'"(?:latitude|longitude)"'
# A `"latitude"` or `"longitude"` key, then its value: a JSON number, or a number in a string.
_COORDINATE = re.compile(r'("(?:latitude|longitude)"\s*:\s*)("?)(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\2')


def coarse_coordinate(degrees: float) -> float:
    """The centre of the coarse area's cell that holds `degrees`."""
    return round((math.floor(degrees / AREA_CELL_DEG) + 0.5) * AREA_CELL_DEG, AREA_DIGITS)


def _coarse_sql(column: str) -> str:
    # The same rule as coarse_coordinate, for the Delta table's SQL engine.
    return f"round((floor({column} / {AREA_CELL_DEG}) + 0.5) * {AREA_CELL_DEG}, {AREA_DIGITS})"


def coarsen_text(text: str | None) -> str | None:
    """`text` with the value of every latitude and longitude key replaced by its coarse value."""
    if text is None:
        return None

    def coarse(match: re.Match) -> str:
        value = float(match.group(3))
        if not math.isfinite(value):
            return match.group(0)
        return f"{match.group(1)}{match.group(2)}{coarse_coordinate(value):.{AREA_DIGITS}f}{match.group(2)}"

    return _COORDINATE.sub(coarse, text)


def coarsened_rows(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """The rows of `frame` whose `column` still holds a precise coordinate, with it coarsened."""
    candidates = frame.filter(pl.col(column).str.contains(_COORDINATE_KEY))
    if candidates.is_empty():
        return candidates
    changed = candidates.with_columns(
        pl.col(column).map_elements(coarsen_text, return_dtype=pl.String).alias("_coarse"))
    return (changed.filter(pl.col("_coarse") != pl.col(column))
            .with_columns(pl.col("_coarse").alias(column)).drop("_coarse"))


def _age_time() -> pl.Expr:
    return pl.coalesce("reading_time", "delivered_at")


def _text_table(path, keys: list[str], column: str, old: pl.Expr) -> int:
    """Coarsen the old rows of one text column of a table, in one commit."""
    if not tables.exists(path):
        return 0
    # Only the rows whose text names a coordinate are read (streaming): the others never change.
    frame = (tables.scan(path, pl.Schema()).filter(old & pl.col(column).str.contains(_COORDINATE_KEY))
             .select(*keys, column).collect(engine="streaming"))
    return tables.update_matching(path, coarsened_rows(frame, column), keys, [column])


def coarsen_lake(lake: LakeResource, cutoff: datetime) -> dict[str, int]:
    """Coarsen every precise coordinate the lake keeps from before `cutoff`. Returns the rows
    changed per table (all zero when there was nothing left to coarsen)."""
    raw, out = RawLayout(lake), ReadingsLayout(lake)
    changed: dict[str, int] = {}

    coarse_value = _coarse_sql("value")
    metrics = ", ".join(f"'{metric}'" for metric in COORDINATE_METRICS)
    changed["readings"] = (tables.update(
        out.table("readings"), {"value": coarse_value},
        f"metric IN ({metrics}) AND reading_time < '{cutoff.isoformat()}' AND value <> {coarse_value}")
        if tables.exists(out.table("readings")) else 0)

    signal_keys = ["day", "event_id", "signal_index"]  # `day` first: the merge then skips other days' files
    changed["raw/signals"] = _text_table(raw.table_dir("signals"), signal_keys, "body", _age_time() < cutoff)
    changed["quarantine/readings"] = _text_table(out.table("quarantine/readings"), signal_keys, "body",
                                                 _age_time() < cutoff)

    signals_path = raw.table_dir("signals")
    old_events = (tables.scan(signals_path, pl.Schema()).group_by("event_id").agg(_age_time().min().alias("oldest"))
                  .filter(pl.col("oldest") < cutoff).select("event_id").collect().get_column("event_id")
                  if tables.exists(signals_path) else pl.Series("event_id", [], pl.String))
    changed["raw/deliveries"] = _text_table(
        raw.table_dir("deliveries"), ["event_id"], "payload",
        pl.col("event_id").is_in(old_events.implode()) | (pl.col("delivered_at") < cutoff))
    changed["quarantine/deliveries"] = _text_table(raw.table_dir("quarantine"), ["batch_id", "line_no"], "raw_text",
                                                   pl.col("landed_on") < cutoff.date())

    for path in (out.table("readings"), signals_path, out.table("quarantine/readings"), raw.table_dir("deliveries"),
                 raw.table_dir("quarantine")):
        # Vacuumed, and the log too: its statistics of the files just replaced (minimum and
        # maximum per column) hold coordinates.
        tables.forget_history(path, lake.retention_hours)
    return changed


class LocationRetentionConfig(dg.Config):
    retention_days: float = 30.0  # precise coordinates older than this (by reading time) are coarsened
    # The clock: "now" as an ISO-8601 time (UTC unless it says otherwise); empty for the wall clock.
    as_of: str = ""


def retention_cutoff(config: LocationRetentionConfig, now: datetime | None = None) -> datetime:
    if config.as_of:
        now = datetime.fromisoformat(config.as_of)
        now = now if now.tzinfo else now.replace(tzinfo=UTC)
    return (now or datetime.now(UTC)) - timedelta(days=config.retention_days)


@dg.asset(group_name="lake", deps=[readings], pool="lake", kinds={"delta"})
def coarsened_locations(context: dg.AssetExecutionContext, config: LocationRetentionConfig,
                        lake: LakeResource) -> dg.MaterializeResult:
    """Precise coordinates older than the retention, coarsened in the lake's tables to the
    centre of the marts' coarse area (a 0.1° cell); each table in one commit, then vacuumed."""
    cutoff = retention_cutoff(config)
    changed = coarsen_lake(lake, cutoff)
    context.log.info(f"coarsened locations before {cutoff.isoformat()}: {changed}")
    return dg.MaterializeResult(metadata={
        "cutoff": cutoff.isoformat(), "retention_days": config.retention_days,
        "rows_coarsened": dg.MetadataValue.json(changed), "dagster/row_count": sum(changed.values())})
