"""When charging draws its energy: time of use, cost, the fleet's load profile and its
daily energy, all in local time.

A session's energy is spread evenly over its estimated charging interval (AC charging runs
at a near-constant power; a DC session is short enough that the shape within it does not
matter at an hour's resolution), cut into 15-minute buckets. Local time is one configured
IANA time zone for the fleet.
"""

from __future__ import annotations

from datetime import date

import polars as pl

BUCKET = "15m"
BUCKET_MIN = 15
DAY_TYPES = ("weekday", "weekend")
LOCATION_TYPES = ("home", "work", "public", "unknown")


def parse_windows(windows: list[str]) -> list[tuple[int, int]]:
    """'HH:MM-HH:MM' local-time windows as (start, end) minutes of the day; a window may wrap
    past midnight ('22:00-06:00'); '00:00-24:00' is the whole day. Boundaries must fall on a
    quarter hour, the resolution energy is spread at."""
    parsed = []
    for window in windows:
        try:
            start, end = (int(h) * 60 + int(m) for h, m in (part.strip().split(":") for part in window.split("-")))
        except ValueError:
            raise ValueError(f"time window {window!r} is not 'HH:MM-HH:MM'") from None
        if not (0 <= start < 1440 and 0 < end <= 1440 and start != end):
            raise ValueError(f"time window {window!r} is out of range or empty")
        if start % BUCKET_MIN or end % BUCKET_MIN:
            raise ValueError(f"time window {window!r} must start and end on a quarter hour")
        parsed.append((start, end))
    return parsed


def in_windows(minute_of_day: pl.Expr, windows: list[tuple[int, int]]) -> pl.Expr:
    inside = pl.lit(False)
    for start, end in windows:
        if start < end:
            inside = inside | ((minute_of_day >= start) & (minute_of_day < end))
        else:
            inside = inside | (minute_of_day >= start) | (minute_of_day < end)
    return inside


def spread(frame: pl.DataFrame, start: str, end: str, every: str = BUCKET) -> pl.DataFrame:
    """One row per interval and `every` bucket it touches, with `bucket` (its UTC start),
    `overlap_h` (hours of the interval in the bucket) and `share` (the interval's fraction
    in the bucket; an instant puts all of it in its bucket)."""
    s, e = pl.col(start), pl.col(end)
    bucket_end = pl.col("bucket").dt.offset_by(every)
    # in microseconds: whole seconds would lose a little of every session's energy
    overlap_s = (pl.min_horizontal(e, bucket_end) - pl.max_horizontal(s, pl.col("bucket"))).dt.total_microseconds() / 1e6
    span_s = (e - s).dt.total_microseconds() / 1e6
    return (frame.with_columns(pl.datetime_ranges(s.dt.truncate(every), e, every).alias("bucket"))
            .explode("bucket")
            .with_columns(overlap_s.clip(lower_bound=0).alias("_overlap_s"), span_s.alias("_span_s"))
            .with_columns((pl.col("_overlap_s") / 3600.0).alias("overlap_h"),
                          pl.when(pl.col("_span_s") > 0).then(pl.col("_overlap_s") / pl.col("_span_s"))
                          .otherwise(1.0).alias("share"))
            .filter(pl.col("share") > 0)
            .drop("_overlap_s", "_span_s"))


def with_local_time(frame: pl.DataFrame, column: str, timezone: str) -> pl.DataFrame:
    local = pl.col(column).dt.convert_time_zone(timezone)
    return frame.with_columns(
        local.dt.date().alias("local_date"), local.dt.hour().cast(pl.Int32).alias("local_hour"),
        (local.dt.hour().cast(pl.Int32) * 60 + local.dt.minute().cast(pl.Int32)).alias("local_minute"),
        pl.when(local.dt.weekday() >= 6).then(pl.lit("weekend")).otherwise(pl.lit("weekday")).alias("day_type"),
    )


def energy_buckets(sessions: pl.DataFrame, timezone: str) -> pl.DataFrame:
    """Each session's grid energy in 15-minute buckets of its estimated charging interval,
    with local date, hour, minute of day and day type."""
    frame = sessions.select("session_id", "location_type", "grid_energy_kwh",
                            "charge_start_estimated_at", "charge_end_estimated_at")
    buckets = spread(frame, "charge_start_estimated_at", "charge_end_estimated_at")
    buckets = buckets.with_columns((pl.col("grid_energy_kwh") * pl.col("share")).alias("energy_kwh"))
    return with_local_time(buckets, "bucket", timezone)


def time_of_use(sessions: pl.DataFrame, timezone: str, peak_windows: list[str],
                peak_on_weekends: bool) -> pl.DataFrame:
    """Per session, its grid energy drawn in peak and in off-peak time."""
    windows = parse_windows(peak_windows)
    peak = in_windows(pl.col("local_minute"), windows)
    if not peak_on_weekends:
        peak = peak & (pl.col("day_type") == "weekday")
    split = (energy_buckets(sessions, timezone).group_by("session_id")
             .agg(pl.col("energy_kwh").filter(peak).sum().alias("peak_energy_kwh"),
                  pl.col("energy_kwh").filter(~peak).sum().alias("off_peak_energy_kwh")))
    return (sessions.select("session_id").join(split, on="session_id", how="left")
            .with_columns(pl.col("peak_energy_kwh", "off_peak_energy_kwh").fill_null(0.0)))


def session_costs(sessions: pl.DataFrame, tariffs: pl.DataFrame) -> pl.DataFrame:
    """Cost of each session: peak and off-peak grid energy at its location type's prices,
    plus the session fee. `tariffs`: location_type, peak_per_kwh, off_peak_per_kwh, session_fee."""
    return (sessions.join(tariffs, on="location_type", how="left")
            .with_columns((pl.col("peak_energy_kwh") * pl.col("peak_per_kwh")
                           + pl.col("off_peak_energy_kwh") * pl.col("off_peak_per_kwh")
                           + pl.col("session_fee")).alias("cost"))
            .drop("peak_per_kwh", "off_peak_per_kwh", "session_fee"))


def days_by_type(first_day: date, last_day: date) -> pl.DataFrame:
    """How many days of each day type the period [first_day, last_day] has."""
    days = pl.DataFrame({"day": pl.date_range(first_day, last_day, "1d", eager=True)})
    counts = days.group_by(pl.when(pl.col("day").dt.weekday() >= 6).then(pl.lit("weekend"))
                           .otherwise(pl.lit("weekday")).alias("day_type")).agg(pl.len().cast(pl.Int64).alias("days"))
    return pl.DataFrame({"day_type": DAY_TYPES}).join(counts, on="day_type", how="left").with_columns(
        pl.col("days").fill_null(0))


def load_profile(sessions: pl.DataFrame, timezone: str, first_day: date | None, last_day: date | None) -> pl.DataFrame:
    """Day type × local hour × location type: the fleet's average grid power (kW) at that
    hour on a day of that type over the period, the energy drawn then in the whole period,
    the sessions charging then, and the number of days of that type behind the average."""
    grid = (pl.DataFrame({"day_type": DAY_TYPES}).join(pl.DataFrame({"hour": pl.int_range(0, 24, eager=True)
                                                                      .cast(pl.Int32)}), how="cross")
            .join(pl.DataFrame({"location_type": LOCATION_TYPES}), how="cross"))
    if first_day is None or last_day is None or sessions.is_empty():
        days = pl.DataFrame({"day_type": DAY_TYPES, "days": [0, 0]})
        energy = pl.DataFrame(schema={"day_type": pl.String, "hour": pl.Int32, "location_type": pl.String,
                                      "energy_kwh": pl.Float64, "sessions": pl.Int64})
    else:
        days = days_by_type(first_day, last_day)
        energy = (energy_buckets(sessions, timezone).rename({"local_hour": "hour"})
                  .group_by("day_type", "hour", "location_type")
                  .agg(pl.col("energy_kwh").sum(), pl.col("session_id").n_unique().cast(pl.Int64).alias("sessions")))
    return (grid.join(energy, on=["day_type", "hour", "location_type"], how="left").join(days, on="day_type")
            .with_columns(pl.col("energy_kwh").fill_null(0.0), pl.col("sessions").fill_null(0))
            .with_columns(pl.when(pl.col("days") > 0).then(pl.col("energy_kwh") / pl.col("days"))
                          .otherwise(None).alias("avg_power_kw"))  # kWh per 1-hour slot = mean kW
            .select("day_type", "hour", "location_type", "avg_power_kw", "energy_kwh", "sessions", "days")
            .sort("day_type", "hour", "location_type"))


def daily_energy(sessions: pl.DataFrame, timezone: str, peak_windows: list[str], peak_on_weekends: bool) -> pl.DataFrame:
    """Local day × location type: grid energy drawn that day (split peak / off-peak), the
    sessions and vehicles charging that day."""
    windows = parse_windows(peak_windows)
    peak = in_windows(pl.col("local_minute"), windows)
    if not peak_on_weekends:
        peak = peak & (pl.col("day_type") == "weekday")
    buckets = energy_buckets(sessions, timezone).join(
        sessions.select("session_id", "vehicle_id"), on="session_id")
    return (buckets.group_by(pl.col("local_date").alias("day"), "day_type", "location_type")
            .agg(pl.col("energy_kwh").sum(),
                 pl.col("energy_kwh").filter(peak).sum().alias("peak_energy_kwh"),
                 pl.col("energy_kwh").filter(~peak).sum().alias("off_peak_energy_kwh"),
                 pl.col("session_id").n_unique().cast(pl.Int64).alias("sessions"),
                 pl.col("vehicle_id").n_unique().cast(pl.Int64).alias("vehicles"))
            .sort("day", "location_type"))
