"""The one partitioning of Fleetlake: readings by the UTC day of the reading time.

Every raw signal is filed under a day that is a partition, so every signal gets an outcome:
a plausible reading under its own day (at the latest the day after it was received, which
end_offset=2 makes a partition), anything else under its delivery's day, kept within the
first partition and the day the signal was ingested."""

import json
import os
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl

from storage.files import write_text_atomic

FIRST_READING_DAY = date(2020, 1, 1)


def first_day_record(data_dir: str | Path) -> Path:
    """The small record of the earliest day the lake holds signals for, under its state."""
    return Path(data_dir) / "lake" / "_state" / "first_reading_day.json"


def recorded_first_day(data_dir: str | Path) -> date | None:
    try:
        return date.fromisoformat(json.loads(first_day_record(data_dir).read_text())["first_reading_day"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record_reading_days(data_dir: str | Path, days) -> date | None:
    """Keep the earliest of `days` (days that received signals) in the record, if earlier than
    what it holds. Returns the recorded first day. A day before FIRST_READING_DAY is never a
    partition (ingest files no signal there; only a lake of an older version holds one)."""
    first = min((day for day in days if day >= FIRST_READING_DAY), default=None)
    recorded = recorded_first_day(data_dir)
    if first is not None and (recorded is None or first < recorded):
        write_text_atomic(json.dumps({"first_reading_day": first.isoformat()}), first_day_record(data_dir))
        return first
    return recorded


def partitions_start() -> date:
    """The first reading day partition: the recorded first day of $FLEETLAKE_DATA_DIR's lake
    (the commands set it; so does the README's UI command), so that the partitions cover the
    days the data has; else, with no data dir named or no data yet, 2020-01-01."""
    data_dir = os.getenv("FLEETLAKE_DATA_DIR")
    return (recorded_first_day(data_dir) if data_dir else None) or FIRST_READING_DAY


# end_offset=2 includes today and tomorrow (UTC): a reading may be up to MAX_CLOCK_SKEW
# after the moment it was received (a car's clock running ahead around midnight).
reading_days = dg.DailyPartitionsDefinition(
    start_date=partitions_start().isoformat(), timezone="UTC", end_offset=2
)

# A reading more than this after its delivery is implausible (the car's clock is wrong).
MAX_CLOCK_SKEW = pl.duration(days=1)


def received_at() -> pl.Expr:
    """When Fleetlake had the signal: its delivery time, but never later than its ingest
    (`ingested_at`, null for signals not yet stored): a delivery dated in the future is not."""
    return pl.min_horizontal("delivered_at", "ingested_at")


def plausible_reading_time() -> pl.Expr:
    """A reading time that is readable, not before the first partition, and not more than
    `MAX_CLOCK_SKEW` after the signal was received."""
    time = pl.col("reading_time")
    return time.is_not_null() & (time.dt.date() >= FIRST_READING_DAY) & (time <= received_at() + MAX_CLOCK_SKEW)


def reading_day() -> pl.Expr:
    """The day partition of a signal: the UTC day of its reading time; or, when that is
    unreadable or implausible (it is quarantined in that day), the day of its delivery,
    kept between the first partition and the day it was received."""
    filed = pl.col("delivered_at").dt.date().clip(pl.lit(FIRST_READING_DAY), received_at().dt.date())
    return pl.when(plausible_reading_time()).then(pl.col("reading_time").dt.date()).otherwise(filed)
