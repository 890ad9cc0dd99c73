"""The one partitioning of Fleetlake: readings by the UTC day of the reading time.

Every raw signal is filed under a day that is a partition, so every signal gets an outcome:
a plausible reading under its own day (at the latest the day after it was received, which
end_offset=2 makes a partition), anything else under its delivery's day, kept within the
first partition and the day the signal was ingested."""

from datetime import date

import dagster as dg
import polars as pl

FIRST_READING_DAY = date(2020, 1, 1)

# end_offset=2 includes today and tomorrow (UTC): a reading may be up to MAX_CLOCK_SKEW
# after the moment it was received (a car's clock running ahead around midnight).
reading_days = dg.DailyPartitionsDefinition(
    start_date=FIRST_READING_DAY.isoformat(), timezone="UTC", end_offset=2
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
