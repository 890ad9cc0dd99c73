"""The one partitioning of Fleetlake: readings by the UTC day of the reading time."""

from datetime import date

import dagster as dg

FIRST_READING_DAY = date(2020, 1, 1)

# end_offset=1 includes today, so readings of the current UTC day have a partition too.
reading_days = dg.DailyPartitionsDefinition(
    start_date=FIRST_READING_DAY.isoformat(), timezone="UTC", end_offset=1
)
