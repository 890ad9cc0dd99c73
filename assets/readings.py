"""The readings layer: typed readings in SI units, one Dagster partition per UTC day.

A day is rebuilt whole from the committed raw signals stored under it, so materializing a
partition is idempotent, and late data for an old day simply makes that day stale again.
Each day records which raw batches it was built from; a day whose sources have not changed
is skipped, so a run costs what the new data costs.
"""


import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl

from assets.normalize import normalize_signals
from assets.parsing import empty_batch
from assets.metadata import markdown_preview
from assets.raw import raw_deliveries
from storage.files import write_parquet_atomic, write_text_atomic
from storage.layout import RawLayout, ReadingsLayout
from storage.partitions import reading_days
from storage.resources import LakeResource
from quality.accounting import signal_accounting
from quality.gx_validation import validate
from quality.results import check_result
from quality.suites import readings_ranges_suite, readings_schema_suite


def stale_days(lake: LakeResource) -> list[date]:
    """Days whose committed raw signals differ from what their readings were built from."""
    raw, built = RawLayout(lake), ReadingsLayout(lake)
    stale = []
    for day in raw.signal_days():
        sources = [p.stem for p in raw.committed_signal_files(day)]
        if sources != (built.built_from(day) or []):
            stale.append(day)
    return stale


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
    readings: pl.DataFrame
    accounting: dict


def build_day(lake: LakeResource, day: date, files: list[Path]) -> DayBuild:
    """Rebuild one day of readings, signal errors and quarantined signals from its committed
    raw signal files."""
    out = ReadingsLayout(lake)
    signals = pl.read_parquet(files) if files else empty_batch().signals
    normalized = normalize_signals(signals)
    write_parquet_atomic(normalized.readings, out.readings_file(day))
    write_parquet_atomic(normalized.signal_errors, out.signal_errors_file(day))
    write_parquet_atomic(normalized.quarantine, out.quarantine_file(day))
    # Accounting from what is on disk now, then the state file that marks the day as built.
    stored = pl.read_parquet(out.readings_file(day), columns=["event_id", "signal_index"])
    accounting = signal_accounting(
        raw_signals=signals.height,
        readings=stored,
        signal_errors=pl.scan_parquet(out.signal_errors_file(day)).select(pl.len()).collect().item(),
        quarantined=pl.scan_parquet(out.quarantine_file(day)).select(pl.len()).collect().item(),
    )
    write_text_atomic(json.dumps({"sources": [p.stem for p in files], **accounting}, indent=1), out.state_file(day))
    return DayBuild(day, normalized.readings, accounting)


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
    backfill_policy=dg.BackfillPolicy.single_run(), pool="lake", kinds={"polars", "parquet"},
)
def readings(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Typed readings in SI units (one row per value), by UTC day of the reading time; with
    the day's signal errors and quarantined signals beside them."""
    layout, built_state = RawLayout(lake), ReadingsLayout(lake)
    validation = ChunkedValidation()
    accounting: dict[str, list[dict]] = {}
    rows = errors = quarantined = 0
    last: pl.DataFrame | None = None
    for key in context.partition_keys:
        day = date.fromisoformat(key)
        files = layout.committed_signal_files(day)
        if [p.stem for p in files] == (built_state.built_from(day) or []):
            continue  # unchanged since it was built
        build = build_day(lake, day, files)
        context.log.info(f"readings {day}: {build.accounting}")
        accounting[key] = [build.accounting]
        rows += build.readings.height
        errors += build.accounting["signal_errors"]
        quarantined += build.accounting["signals_quarantined"]
        validation.add(day, build.readings)
        last = build.readings if build.readings.height else last
    validation.flush()
    return dg.MaterializeResult(
        metadata={
            "days_rebuilt": len(accounting),
            "days_unchanged": len(context.partition_keys) - len(accounting),
            "dagster/row_count": rows,
            "signal_errors": errors,
            "signals_quarantined": quarantined,
            "preview": dg.MetadataValue.md(markdown_preview(last) if last is not None else ""),
        },
        check_results=[
            check_result(lake, READINGS_CHECKS["readings_schema"], validation.outcomes["readings_schema"]),
            check_result(lake, READINGS_CHECKS["readings_in_range"], validation.outcomes["readings_ranges"]),
            check_result(lake, READINGS_CHECKS["signals_accounted"], accounting),
        ],
    )


class ChunkedValidation:
    """Runs the readings suites over consecutive rebuilt days in chunks of about
    `CHUNK_ROWS` readings: GX's cost is mostly per call, and chunks keep memory bounded."""

    CHUNK_ROWS = 1_000_000

    def __init__(self) -> None:
        self.suites = {"readings_schema": readings_schema_suite(), "readings_ranges": readings_ranges_suite()}
        self.outcomes: dict[str, dict[str, list[dict]]] = {name: {} for name in self.suites}
        self.days: list[date] = []
        self.frames: list[pl.DataFrame] = []

    def add(self, day: date, readings: pl.DataFrame) -> None:
        if readings.height:
            self.days.append(day)
            self.frames.append(readings)
        if sum(f.height for f in self.frames) >= self.CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.frames:
            return
        scope = self.days[0].isoformat() if len(self.days) == 1 else f"{self.days[0]}..{self.days[-1]}"
        chunk = with_reading_key(pl.concat(self.frames))
        for name, suite in self.suites.items():
            self.outcomes[name][scope] = [o.as_dict() for o in validate(chunk, suite)]
        self.days, self.frames = [], []
