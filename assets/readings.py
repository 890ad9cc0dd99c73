"""The readings layer: typed readings in SI units, one Dagster partition per UTC day.

A day is built from the committed raw signals stored under it, one commit per table, so
materializing a partition is idempotent, and late data for an old day simply makes that day
stale again. Each day records the last ingest group its raw signals were built up to
(`_state/readings`); a day no later group has added to is skipped, and a day built before
gets only the readings of the later groups' signals, so a run costs what the new data costs.
"""


from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date

import dagster as dg
import polars as pl

from assets.normalize import READINGS_SCHEMA, NormalizedSignals, normalize_signals
from assets.parsing import empty_batch
from assets.metadata import markdown_preview
from assets.raw import raw_deliveries
from storage import tables
from storage.layout import READINGS_STATE_SCHEMA, RawLayout, ReadingsLayout
from storage.memory import owned, release_freed_memory
from storage.partitions import reading_days
from storage.resources import LakeResource
from quality.accounting import signal_accounting
from quality.gx_validation import validate
from quality.results import check_result
from quality.suites import readings_ranges_suite, readings_schema_suite, with_metric_ranges


def stale_days(lake: LakeResource) -> list[date]:
    """Days whose committed raw signals differ from what their readings were built from."""
    built = ReadingsLayout(lake).states()
    return [day for day, seq in RawLayout(lake).day_seqs().items() if seq != (built.get(day) or {}).get("source_seq")]


def distinct_readings(readings: pl.DataFrame) -> pl.DataFrame:
    """One value per vehicle, metric, component and reading time. Smartcar re-sends a value
    with its original time in later deliveries: that is the same reading, and the first
    delivered wins. Sorted by vehicle, metric, component and time."""
    return (
        readings.sort("vehicle_id", "metric", "component", "reading_time", "delivered_at", "event_id", nulls_last=True)
        .unique(["vehicle_id", "metric", "component", "reading_time"], keep="first", maintain_order=True)
    )


@dataclass(frozen=True)
class DayBuild:
    day: date
    readings: int  # how many were stored
    preview: pl.DataFrame  # the first readings of the last vehicles built
    accounting: dict


# Raw signals as normalize reads them: the batch's signals and when they were ingested.
RAW_SIGNALS_SCHEMA = pl.Schema({**empty_batch().signals.schema, "ingested_at": pl.Datetime("us", "UTC")})
OUTPUTS = ("readings", "signal_errors", "quarantine/readings")


# A day is normalized in shards of vehicles of about this many signals, and its readings are
# streamed shard by shard into the day's one commit: a signal is normalized on its own, so
# memory follows the shard, not the size of the fleet's day.
SHARD_SIGNALS = 100_000


def by_vehicle(frame: pl.DataFrame, rows: int) -> list[pl.DataFrame]:
    """The frame in parts of about `rows` rows, each a range of vehicle ids in order (a
    vehicle's rows in one part), so that parts sorted by vehicle concatenate sorted."""
    if frame.height <= rows:
        return [frame]
    counts = frame.group_by("vehicle_id").len().sort("vehicle_id", nulls_last=True)
    parts = counts.select("vehicle_id", _part=(pl.col("len").cum_sum() - pl.col("len")) // rows)
    shards = frame.join(parts, on="vehicle_id", how="left", nulls_equal=True, maintain_order="left").partition_by(
        "_part", include_key=False, maintain_order=True, as_dict=True)
    return [shards[key] for key in sorted(shards)]


def normalize_in_shards(signals: pl.DataFrame) -> Iterator[NormalizedSignals]:
    """The signals normalized shard by shard (`by_vehicle`): each shard's readings sorted,
    and the shards in vehicle order."""
    for part in by_vehicle(signals, SHARD_SIGNALS):
        yield normalize_signals(part)


def build_day(lake: LakeResource, day: date, source_seq: int, built: dict | None = None,
              on_readings: Callable[[pl.DataFrame], None] = lambda readings: None) -> DayBuild:
    """Bring one day of readings, signal errors and quarantined signals up to ingest group
    `source_seq`, from its committed raw signals. `built` is the day's state (what it was
    built up to): when it was built and balanced, only the signals of later groups are
    normalized and added to it (a signal is normalized on its own, and an ingest group holds
    only events no earlier group did); otherwise each table's day is replaced whole. Each
    table's commit records the version it brings the day to (`tables.version_of`): a day
    whose additions a crash left half-done (the state row not written) is rebuilt whole.
    `on_readings` sees each shard's new readings as they are produced (to validate them)."""
    raw, out = RawLayout(lake), ReadingsLayout(lake)
    app = f"readings {day.isoformat()}"
    built_seq = built["source_seq"] if built and built["success"] else 0
    if built_seq and any((tables.version_of(out.table(kind), app) or 0) > built_seq for kind in OUTPUTS):
        built_seq = 0
    scan = raw.scan("signals", pl.Schema({**RAW_SIGNALS_SCHEMA, "day": pl.Date, "ingest_seq": pl.Int64}))
    day_signals = scan.filter(pl.col("day") == day, pl.col("ingest_seq") <= source_seq)
    signals = (day_signals.filter(pl.col("ingest_seq") > built_seq)
               .select(RAW_SIGNALS_SCHEMA.names()).collect())
    others: dict[str, list[pl.DataFrame]] = {"signal_errors": [], "quarantine/readings": []}
    preview = pl.DataFrame(schema=READINGS_SCHEMA)

    def shards_readings() -> Iterator[pl.DataFrame]:
        nonlocal preview
        for shard in normalize_in_shards(signals):
            others["signal_errors"].append(shard.signal_errors)
            others["quarantine/readings"].append(shard.quarantine)
            on_readings(shard.readings)
            preview = owned(shard.readings.head(20)) if shard.readings.height else preview
            yield shard.readings

    where = f"day = '{day.isoformat()}'"
    replacing = None if built_seq else where  # None: the rows are added to the day
    tables.replace_in_parts(out.table("readings"), shards_readings(), pl.Schema(READINGS_SCHEMA), replacing,
                            partition_by=["day"], version=(app, source_seq))
    for kind, parts in others.items():
        added = pl.concat(parts)
        if replacing or added.height:  # nothing to add is no commit (its version then stays behind, never ahead)
            tables.replace(out.table(kind), added, replacing, partition_by=["day"], version=(app, source_seq))
    # Accounting from what is stored now, then the state row that marks the day as built.
    stored = {kind: tables.scan(out.table(kind), pl.Schema()).filter(pl.col("day") == day) for kind in OUTPUTS}
    stored_readings = stored["readings"].select("event_id", "signal_index").collect()
    accounting = signal_accounting(
        raw_signals=signals.height if not built_seq else day_signals.select(pl.len()).collect().item(),
        readings=stored_readings,
        signal_errors=stored["signal_errors"].select(pl.len()).collect().item(),
        quarantined=stored["quarantine/readings"].select(pl.len()).collect().item(),
    )
    state = pl.DataFrame([{"day": day, "source_seq": source_seq, **accounting}], schema=READINGS_STATE_SCHEMA)
    # Partitioned by day too, so that days built in parallel never touch the same files.
    tables.replace(out.state_table, state, where, partition_by=["day"])
    return DayBuild(day, stored_readings.height, preview, accounting)


def vacuum_readings(lake: LakeResource) -> int:
    """Delete the readings tables' files that no version within the lake's retention uses."""
    out = ReadingsLayout(lake)
    return sum(tables.vacuum(path, lake.retention_hours) for path in [*map(out.table, OUTPUTS), out.state_table])


READINGS_CHECKS = {spec.name: spec for spec in [
    dg.AssetCheckSpec("readings_schema", asset="readings", blocking=True,
                      description="GX suite `readings_schema`: contract columns, keys not null, known metrics, "
                                  "one row per value."),
    dg.AssetCheckSpec("readings_in_range", asset="readings", blocking=True,
                      description="GX suite `readings_ranges`: every value inside its metric's physical range (SI)."),
    dg.AssetCheckSpec("signals_accounted", asset="readings", blocking=True,
                      description="Every raw signal of the day is a reading, a signal error or quarantined."),
]}


def with_reading_key(readings: pl.DataFrame) -> pl.DataFrame:
    return readings.with_columns(reading_key=pl.concat_str(
        "event_id", "signal_index", "metric", pl.col("component").fill_null(""), separator="|"))


@dg.asset(
    group_name="lake", partitions_def=reading_days, deps=[raw_deliveries], check_specs=list(READINGS_CHECKS.values()),
    backfill_policy=dg.BackfillPolicy.single_run(), pool="lake", kinds={"polars", "delta"},
)
def readings(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Typed readings in SI units (one row per value), by UTC day of the reading time; with
    the day's signal errors and quarantined signals beside them."""
    day_seqs, built = RawLayout(lake).day_seqs(), ReadingsLayout(lake).states()
    accounting: dict[str, list[dict]] = {}
    rows = errors = quarantined = 0
    last: pl.DataFrame | None = None
    with ChunkedValidation() as validation:
        for key in context.partition_keys:
            day = date.fromisoformat(key)
            source_seq = day_seqs.get(day, 0)
            if source_seq == (built.get(day) or {}).get("source_seq", 0):
                continue  # unchanged since it was built (or never had signals)
            build = build_day(lake, day, source_seq, built.get(day),
                              on_readings=lambda shard, day=day: validation.add(day, shard))
            context.log.info(f"readings {day}: {build.accounting}")
            accounting[key] = [build.accounting]
            rows += build.readings
            errors += build.accounting["signal_errors"]
            quarantined += build.accounting["signals_quarantined"]
            last = build.preview if build.readings else last
            release_freed_memory()
        outcomes = validation.finish()
    vacuum_readings(lake)
    return dg.MaterializeResult(
        metadata={
            "days_rebuilt": len(accounting),
            "days_unchanged": len(context.partition_keys) - len(accounting),
            "dagster/row_count": rows,
            "signal_errors": errors,
            "signals_quarantined": quarantined,
            # never a position: the Dagster instance keeps metadata for as long as its runs
            "preview": dg.MetadataValue.md(markdown_preview(
                last.filter(~pl.col("metric").is_in(["latitude_deg", "longitude_deg"]))) if last is not None else ""),
        },
        check_results=[
            check_result(lake, READINGS_CHECKS["readings_schema"], outcomes["readings_schema"]),
            check_result(lake, READINGS_CHECKS["readings_in_range"], outcomes["readings_ranges"]),
            check_result(lake, READINGS_CHECKS["signals_accounted"], accounting),
        ],
    )


class ChunkedValidation:
    """Runs the readings suites over consecutive rebuilt days in chunks of about
    `CHUNK_ROWS` readings: GX's cost is mostly per call, and chunks keep memory bounded.
    A chunk is validated in a thread of its own while the next days are normalized (GX
    works in Python and pandas, normalizing mostly in Polars and DuckDB, outside the
    interpreter lock); one chunk at most is in flight, so memory holds two."""

    CHUNK_ROWS = 100_000

    def __init__(self) -> None:
        self.suites: dict = {}  # made by the validating thread, which also imports GX
        self.outcomes: dict[str, dict[str, list[dict]]] = {"readings_schema": {}, "readings_ranges": {}}
        self.days: list[date] = []
        self.frames: list[pl.DataFrame] = []
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="readings-validation")
        self.in_flight: Future | None = None

    def add(self, day: date, readings: pl.DataFrame) -> None:
        if readings.height:
            if day not in self.days:  # a day's shards arrive one by one
                self.days.append(day)
            self.frames.append(readings)
        if sum(f.height for f in self.frames) >= self.CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        """Validate what was added since the last chunk (after the chunk in flight)."""
        self._settle()
        if not self.frames:
            return
        scope = self.days[0].isoformat() if len(self.days) == 1 else f"{self.days[0]}..{self.days[-1]}"
        chunk = pl.concat(self.frames)
        self.days, self.frames = [], []
        self.in_flight = self.worker.submit(self._validate, scope, chunk)

    def finish(self) -> dict[str, dict[str, list[dict]]]:
        """Validate the rest and wait for every chunk: the outcomes by suite and scope."""
        self.flush()
        self._settle()
        return self.outcomes

    def __enter__(self) -> "ChunkedValidation":
        return self

    def __exit__(self, *exc) -> None:
        self.worker.shutdown(cancel_futures=True)

    def _settle(self) -> None:
        if self.in_flight is not None:
            in_flight, self.in_flight = self.in_flight, None
            in_flight.result()  # raises what the validation raised

    def _validate(self, scope: str, chunk: pl.DataFrame) -> None:
        if not self.suites:
            self.suites = {"readings_schema": readings_schema_suite(), "readings_ranges": readings_ranges_suite()}
        # A day larger than a chunk is validated in parts by vehicle (a delivery's readings,
        # whose keys must be unique, stay together).
        for part in by_vehicle(chunk, self.CHUNK_ROWS):
            for name, frame in (("readings_schema", with_reading_key(part)), ("readings_ranges", with_metric_ranges(part))):
                self.outcomes[name].setdefault(scope, []).extend(o.as_dict() for o in validate(frame, self.suites[name]))
