"""The one partitioning of Fleetlake: readings by the UTC day of the reading time."""

from datetime import date

import dagster as dg
import polars as pl

FIRST_READING_DAY = date(2020, 1, 1)

# end_offset=1 includes today, so readings of the current UTC day have a partition too.
reading_days = dg.DailyPartitionsDefinition(
    start_date=FIRST_READING_DAY.isoformat(), timezone="UTC", end_offset=1
)

# A reading more than this after its delivery is implausible (the car's clock is wrong).
MAX_CLOCK_SKEW = pl.duration(days=1)


def plausible_reading_time() -> pl.Expr:
    """A reading time that is readable, not before the first partition, and not more than
    `MAX_CLOCK_SKEW` after the delivery that carried it."""
    time = pl.col("reading_time")
    return time.is_not_null() & (time.dt.date() >= FIRST_READING_DAY) & (time <= pl.col("delivered_at") + MAX_CLOCK_SKEW)


def reading_day() -> pl.Expr:
    """The day partition of a signal: the UTC day of its reading time, or of its delivery
    when the reading time is unreadable or implausible (it is quarantined in that day)."""
    return pl.when(plausible_reading_time()).then(pl.col("reading_time").dt.date()).otherwise(
        pl.col("delivered_at").dt.date())
