"""Charging sessions found in periodic readings, and what each one added to the battery.

Readings arrive as they really do: every 5 to 60 minutes, some missing, every hour or two
while the car sleeps, and not at the moments that matter (plug-in, charge start, charge
stop, unplug). So a session is built from what the readings show:

- A **plug-in** is a stretch of readings that show the cable connected (or the car
  charging), ended by a reading that shows it unplugged or by the odometer moving (a car
  that drove was unplugged, even if no reading caught it). Vehicles that never report the
  cable fall back to the charging flag alone.
- A **session** is a plug-in with at least one reading that shows the car charging. It
  runs from the first reading that shows it charging (`started_at`) to the last one
  (`ended_at`), as DESIGN.md defines; the plug-in's first and last readings
  (`plugged_in_at`, `unplugged_at`) bound it, and the difference is idle time (waiting
  for a scheduled start, or sitting full at the charge limit).
- **Energy added** is energy into the battery: the car's energy-added counter (cumulative
  within a session) where it reports one, else the rise in state of charge times the
  battery's usable capacity (estimated from the car's own sessions where possible, else
  its nominal capacity).
- **Power** comes from the car's power signal where present (time-weighted mean and
  maximum over the charging readings), else from energy over time.

Everything here is a plain function of Polars frames; `assets/marts/charging/assets.py` wires them
into Dagster.
"""

from __future__ import annotations

import polars as pl

from assets.readings import distinct_readings

CHARGING_METRICS = ("is_charging", "is_plugged_in", "soc_pct", "energy_added_kwh", "charge_power_kw",
                    "odometer_km", "latitude_deg", "longitude_deg", "battery_capacity_kwh", "charge_limit_pct",
                    "is_fast_charger", "charging_status", "range_km")
# Text readings among them: the value is null, the component carries the word.
CHARGING_TEXT_METRICS = ("charging_status",)

# The odometer moved (the car drove, so it was unplugged) when it rose by more than this
# between two readings and the next reading confirms the rise (a lone spike does not).
MOVED_KM = 0.5
# Sessions whose state of charge rose by at least this many points between their first
# and last charging readings estimate the usable capacity: with SoC reported to 0.1 point,
# 20 points keep the rounding error under 1 %.
CAPACITY_MIN_SOC_GAIN_PCT = 20.0
# A rate of charge (kW) from energy over time needs readings at least this far apart.
MIN_RATE_SPAN_MIN = 10.0
# Without a rate of charge, the charge is taken to have started (stopped) halfway between
# the first (last) charging reading and its neighbour, but no more than this many hours away.
MAX_MIDPOINT_H = 1.0
# Without an energy counter or power signal, the usable capacity is unknowable from the car:
# energy is the SoC gain times the nominal capacity, and its uncertainty spans the plausible
# share of the nominal (gross) capacity that is usable (net capacity and ageing), with the
# SoC readings' own slack on either end.
USABLE_SHARE_RANGE = (0.80, 1.00)
SOC_SLACK_PCT = 1.0
# A state of health outside this range is flagged in its row (not fatal): implausible.
PLAUSIBLE_HEALTH_PCT = (60.0, 102.0)
# Above this average power a session is DC fast charging (DESIGN.md).
DC_FAST_KW = 22.0
# A session whose final SoC is within this many points of its charge limit stopped at the
# limit (cars stop a little either side of it, and SoC is read to 0.1 point).
LIMIT_SLACK_PCT = 1.0
# Words of the car's detailed charging status that name the current type. Smartcar publishes
# no list of values, so only a word that says AC or DC (or fast) as a whole token counts.
DC_STATUS_PATTERN = r"(^|[^A-Z0-9])(DC|FAST)([^A-Z0-9]|$)"
AC_STATUS_PATTERN = r"(^|[^A-Z0-9])AC([^A-Z0-9]|$)"

_TIME = pl.Datetime("us", "UTC")


def charging_readings(readings: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame | pl.LazyFrame:
    """The charging-related readings, one value per vehicle, metric, component and time (of
    a frame or, lazily, of a scan)."""
    present = pl.col("value").is_not_null() | (pl.col("metric").is_in(CHARGING_TEXT_METRICS)
                                               & pl.col("component").is_not_null())
    return distinct_readings(
        readings.filter(pl.col("metric").is_in(CHARGING_METRICS) & present)
    ).select("vehicle_id", "metric", "component", "reading_time", "value")


def _series(distinct: pl.DataFrame, metric: str, name: str) -> pl.DataFrame:
    return (distinct.filter(pl.col("metric") == metric)
            .select("vehicle_id", "reading_time", pl.col("value").alias(name))
            .sort("vehicle_id", "reading_time"))


def odometer_moves(distinct: pl.DataFrame) -> pl.DataFrame:
    """Reading times at which the odometer shows the car drove since its previous reading."""
    odo = _series(distinct, "odometer_km", "odometer_km")
    prev = pl.col("odometer_km").shift(1).over("vehicle_id")
    nxt = pl.col("odometer_km").shift(-1).over("vehicle_id")
    rose = (pl.col("odometer_km") - prev > MOVED_KM) & (nxt.is_null() | (nxt - prev > MOVED_KM))
    return odo.filter(rose.fill_null(False)).select("vehicle_id", "reading_time", pl.lit(True).alias("moved"))


def plug_timeline(distinct: pl.DataFrame) -> pl.DataFrame:
    """One row per vehicle and reading time that says something about the plug: `charging`,
    `plugged` (null when that reading did not report it), `moved`, whether the car counts as
    `connected` there (null: the reading does not say), and `plug_id`, which numbers the
    stretches between readings that show it unplugged or moved."""
    charging = _series(distinct, "is_charging", "charging").with_columns(pl.col("charging") > 0.5)
    plugged = _series(distinct, "is_plugged_in", "plugged").with_columns(pl.col("plugged") > 0.5)
    moves = odometer_moves(distinct)
    keys = pl.concat([f.select("vehicle_id", "reading_time") for f in (charging, plugged, moves)]).unique()
    timeline = (keys.join(charging, on=["vehicle_id", "reading_time"], how="left")
                .join(plugged, on=["vehicle_id", "reading_time"], how="left")
                .join(moves, on=["vehicle_id", "reading_time"], how="left")
                .with_columns(pl.col("moved").fill_null(False))
                .sort("vehicle_id", "reading_time"))
    reports_plug = pl.col("plugged").is_not_null().any().over("vehicle_id")
    connected = (pl.when(pl.col("plugged").is_not_null()).then(pl.col("plugged") | pl.col("charging").fill_null(False))
                 .when(pl.col("charging")).then(True)
                 # without a cable signal, "not charging" is the only sign of an unplug
                 .when(pl.col("charging").is_not_null() & ~reports_plug).then(False)
                 .otherwise(None))
    timeline = timeline.with_columns(connected.alias("connected"))
    boundary = (pl.col("connected").not_().fill_null(False) | pl.col("moved")).cast(pl.Int32)
    return timeline.with_columns(boundary.cum_sum().over("vehicle_id").alias("plug_id"))


def find_sessions(timeline: pl.DataFrame) -> pl.DataFrame:
    """Sessions: the plug-ins with at least one charging reading. Times are those of the
    readings; `prev_reading_at` / `next_reading_at` are the vehicle's charging-flag readings
    just before the first and after the last charging reading (the charge started and
    stopped somewhere in between)."""
    flagged = (timeline.filter(pl.col("charging").is_not_null())
               .with_columns(pl.col("reading_time").shift(1).over("vehicle_id").alias("prev_reading_at"),
                             pl.col("reading_time").shift(-1).over("vehicle_id").alias("next_reading_at"))
               .filter(pl.col("charging")))
    charging = flagged.group_by("vehicle_id", "plug_id").agg(
        pl.col("reading_time").min().alias("started_at"),
        pl.col("reading_time").max().alias("ended_at"),
        pl.len().cast(pl.Int64).alias("charging_readings"),
        pl.col("prev_reading_at").sort_by("reading_time").first(),
        pl.col("next_reading_at").sort_by("reading_time").last(),
    )
    plug = (timeline.with_columns(pl.col("reading_time").shift(-1).over("vehicle_id").alias("next_at"))
            .filter(pl.col("connected").fill_null(False))
            .group_by("vehicle_id", "plug_id")
            .agg(pl.col("reading_time").min().alias("plugged_in_at"),
                 pl.col("reading_time").max().alias("unplugged_at"),
                 pl.col("next_at").sort_by("reading_time").last().alias("unplugged_by")))
    return charging.join(plug, on=["vehicle_id", "plug_id"], how="left").with_columns(
        pl.min_horizontal("plugged_in_at", "started_at").alias("plugged_in_at"),
        pl.max_horizontal("unplugged_at", "ended_at").alias("unplugged_at"),
    ).with_columns(
        # the cable came out after the last reading that shows it in, and before the next
        # reading: a car asleep overnight may send none in between
        pl.coalesce("unplugged_by", "unplugged_at").alias("unplugged_by"),
    ).sort("vehicle_id", "started_at")


def readings_in_sessions(series: pl.DataFrame, sessions: pl.DataFrame, start: str, end: str,
                         after: str = "0m") -> pl.DataFrame:
    """The readings of `series` that fall within [start, end + after] of a session of the same
    vehicle (a vehicle's sessions do not overlap), tagged with the session's key."""
    windows = sessions.select("vehicle_id", "plug_id", pl.col(start).alias("_from"), pl.col(end).alias("_to"))
    return (series.sort("reading_time")
            # both sides are sorted by time, as an as-of join by vehicle needs (Polars
            # cannot verify sortedness within groups, so it is not asked to)
            .join_asof(windows.sort("_from"), left_on="reading_time", right_on="_from", by="vehicle_id",
                       strategy="backward", check_sortedness=False)
            .filter(pl.col("plug_id").is_not_null()
                    & (pl.col("reading_time") <= pl.col("_to").dt.offset_by(after)))
            .drop("_from", "_to"))


def _trapezoid_kwh(t: pl.Expr, p: pl.Expr) -> pl.Expr:
    """Energy (kWh) under a power curve (kW) sampled at times t, by the trapezoid rule."""
    hours = t.diff().dt.total_microseconds() / 1e6 / 3600.0
    return (hours * (p + p.shift(1)) / 2.0).sum()


def session_readings(distinct: pl.DataFrame, sessions: pl.DataFrame) -> pl.DataFrame:
    """Per session, what the readings say about its energy and power (before any capacity
    is applied): SoC before, at the first and last charging reading, and after; the
    energy-added counter; and the power signal."""
    key = ["vehicle_id", "plug_id"]
    bounds = sessions.select(*key, "plugged_in_at", "started_at", "ended_at", "unplugged_at")
    soc = readings_in_sessions(_series(distinct, "soc_pct", "soc"), sessions, "plugged_in_at", "unplugged_at")
    soc = soc.join(bounds, on=key).sort(*key, "reading_time")
    t = pl.col("reading_time")
    during = (t >= pl.col("started_at")) & (t <= pl.col("ended_at"))
    soc_stats = soc.group_by(key).agg(
        # the SoC holds while the car waits plugged in, so the last reading before the first
        # charging one is where the charge began; likewise the first one after, where it ended
        pl.col("soc").filter(t < pl.col("started_at")).last().alias("soc_before"),
        pl.col("soc").filter(t > pl.col("ended_at")).first().alias("soc_after"),
        pl.col("soc").filter(during).first().alias("soc_first"),
        pl.col("soc").filter(during).last().alias("soc_last"),
        pl.col("reading_time").filter(during).first().alias("soc_first_at"),
        pl.col("reading_time").filter(during).last().alias("soc_last_at"),
    )
    # The counter restarts at each charge start; readings before this session's first
    # charging reading still show the previous session's total.
    energy = readings_in_sessions(_series(distinct, "energy_added_kwh", "energy"), sessions, "started_at",
                                  "unplugged_at").join(bounds, on=key).sort(*key, "reading_time")
    energy_stats = energy.group_by(key).agg(
        pl.col("energy").max().alias("counter_kwh"),
        pl.col("energy").filter(during).first().alias("counter_first_kwh"),
        pl.col("energy").filter(during).last().alias("counter_last_kwh"),
        pl.col("reading_time").filter(during).first().alias("counter_first_at"),
        pl.col("reading_time").filter(during).last().alias("counter_last_at"),
    )
    power = readings_in_sessions(_series(distinct, "charge_power_kw", "power"), sessions, "started_at",
                                 "ended_at").filter(pl.col("power") > 0).sort(*key, "reading_time")
    power_stats = power.group_by(key).agg(
        pl.col("power").max().alias("power_max_kw"),
        pl.when(pl.len() > 1)
        .then(_trapezoid_kwh(t, pl.col("power"))
              / ((t.max() - t.min()).dt.total_microseconds() / 1e6 / 3600.0))
        .otherwise(pl.col("power").mean()).alias("power_mean_kw"),
    )
    intervals = capacity_intervals(distinct, sessions, soc_stats)
    return (sessions.select(key)
            .join(soc_stats, on=key, how="left")
            .join(energy_stats, on=key, how="left")
            .join(power_stats, on=key, how="left")
            .join(intervals, on=key, how="left")
            .join(charger_reports(distinct, sessions), on=key, how="left")
            .join(session_limits(distinct, sessions), on=key, how="left")
            .join(stop_soc(distinct, sessions, soc_stats), on=key, how="left"))


def stop_soc(distinct: pl.DataFrame, sessions: pl.DataFrame, soc_stats: pl.DataFrame) -> pl.DataFrame:
    """Per session, where the charge stopped as the first SoC reading after the last charging one
    shows it, up to the reading that shows the car unplugged (`unplugged_by`): a car unplugged
    mid-charge says so only there. Null when that SoC is below the last charging one (the car
    drove first) or there is no such reading."""
    key = ["vehicle_id", "plug_id"]
    after = readings_in_sessions(_series(distinct, "soc_pct", "soc"), sessions, "ended_at", "unplugged_by")
    after = after.join(sessions.select(*key, "ended_at"), on=key).filter(pl.col("reading_time") > pl.col("ended_at"))
    first = after.sort("reading_time").group_by(key).agg(pl.col("soc").first().alias("soc_stop_pct"))
    return (first.join(soc_stats.select(*key, "soc_last"), on=key, how="left")
            .filter(pl.col("soc_last").is_null() | (pl.col("soc_stop_pct") >= pl.col("soc_last") - FINAL_SOC_MARGIN_PCT))
            .select(*key, "soc_stop_pct"))


def charger_reports(distinct: pl.DataFrame, sessions: pl.DataFrame) -> pl.DataFrame:
    """Per session, what the car itself reported about the charger and the charge while
    plugged in: the current type (`AC`/`DC`) from its detailed charging status where a word
    names AC or DC (`status_current_type`; the charge page documents only CHARGING,
    NOT_CHARGING and FULLY_CHARGED, which name none, but a word that does is read), and from
    its fast-charger signal (`fast_charger_current_type`: DC if any reading says a fast
    charger is present, AC if all say none); and `reported_full`, whether a status after the
    last charging reading says FULLY_CHARGED (it stopped at its limit). Null where the car
    said nothing."""
    key = ["vehicle_id", "plug_id"]
    words = (distinct.filter(pl.col("metric") == "charging_status")
             .select("vehicle_id", "reading_time", pl.col("component").alias("word")).sort("vehicle_id", "reading_time"))
    words = (readings_in_sessions(words, sessions, "plugged_in_at", "unplugged_at")
             .join(sessions.select(*key, "ended_at"), on=key)
             .with_columns(pl.when(pl.col("word").str.contains(DC_STATUS_PATTERN)).then(pl.lit("DC"))
                           .when(pl.col("word").str.contains(AC_STATUS_PATTERN)).then(pl.lit("AC")).alias("said")))
    by_status = words.group_by(key).agg(
        pl.when((pl.col("said") == "DC").any()).then(pl.lit("DC"))
        .when((pl.col("said") == "AC").any()).then(pl.lit("AC")).alias("status_current_type"),
        ((pl.col("word") == "FULLY_CHARGED") & (pl.col("reading_time") > pl.col("ended_at"))).any()
        .alias("reported_full"))
    fast = readings_in_sessions(_series(distinct, "is_fast_charger", "fast"), sessions, "plugged_in_at",
                                "unplugged_at")
    by_fast = fast.group_by(key).agg(
        pl.when((pl.col("fast") > 0.5).any()).then(pl.lit("DC")).otherwise(pl.lit("AC"))
        .alias("fast_charger_current_type"))
    return (sessions.select(key).join(by_status, on=key, how="left").join(by_fast, on=key, how="left"))


def session_limits(distinct: pl.DataFrame, sessions: pl.DataFrame) -> pl.DataFrame:
    """Per session, the charge limit in force when it stopped: the vehicle's latest charge-limit
    reading at or before the unplug (a limit is a setting: it holds until the car reports another)."""
    limits = _series(distinct, "charge_limit_pct", "charge_limit_pct")
    ends = sessions.select("vehicle_id", "plug_id", "unplugged_at").sort("unplugged_at")
    return (ends.join_asof(limits.sort("reading_time"), left_on="unplugged_at", right_on="reading_time",
                           by="vehicle_id", strategy="backward", check_sortedness=False)
            .select("vehicle_id", "plug_id", "charge_limit_pct"))


# A SoC this close to the session's final SoC may already be where the car stopped.
FINAL_SOC_MARGIN_PCT = 0.05


def capacity_intervals(distinct: pl.DataFrame, sessions: pl.DataFrame, soc_stats: pl.DataFrame) -> pl.DataFrame:
    """Per session, the energy into the battery and the SoC it added over the intervals between
    consecutive charging readings in which the car certainly charged all the time: both ends
    show it charging, the SoC rose, and the later end is still below the session's final SoC.
    An interval that ends at the final SoC is left out: the car may have reached its limit
    inside it and stood still for the rest (its power reading is a snapshot from before, and
    counting it over the whole interval would inflate the capacity). Energy comes from the
    counter's rise where it reports one at both ends, else from the power signal (trapezoid)."""
    key = ["vehicle_id", "plug_id"]
    at = ["vehicle_id", "reading_time"]
    soc = readings_in_sessions(_series(distinct, "soc_pct", "soc"), sessions, "started_at", "ended_at")
    points = (soc.join(_series(distinct, "is_charging", "charging").with_columns(pl.col("charging") > 0.5),
                       on=at, how="left")
              .join(_series(distinct, "charge_power_kw", "power"), on=at, how="left")
              .join(_series(distinct, "energy_added_kwh", "counter"), on=at, how="left")
              .join(soc_stats.select(*key, pl.coalesce("soc_after", "soc_last").alias("soc_final")), on=key,
                    how="left")
              .sort(*key, "reading_time"))
    nxt = {c: pl.col(c).shift(-1).over(key) for c in ("reading_time", "soc", "charging", "power", "counter")}
    gain = nxt["soc"] - pl.col("soc")
    hours = (nxt["reading_time"] - pl.col("reading_time")).dt.total_microseconds() / 3.6e9
    certain = (pl.col("charging").fill_null(False) & nxt["charging"].fill_null(False) & (gain > 0)
               & (nxt["soc"] < pl.col("soc_final") - FINAL_SOC_MARGIN_PCT))
    by_counter = certain & pl.col("counter").is_not_null() & nxt["counter"].is_not_null() & (nxt["counter"] >= pl.col("counter"))
    by_power = certain & (pl.col("power") > 0) & (nxt["power"] > 0)
    return (points.with_columns(
        pl.when(by_counter).then(nxt["counter"] - pl.col("counter")).alias("_counter_kwh"),
        pl.when(by_counter).then(gain).alias("_counter_gain"),
        pl.when(by_power).then(hours * (pl.col("power") + nxt["power"]) / 2.0).alias("_power_kwh"),
        pl.when(by_power).then(gain).alias("_power_gain"))
        .group_by(key).agg(
            pl.col("_counter_kwh").sum().alias("interval_counter_kwh"),
            pl.col("_counter_gain").sum().alias("interval_counter_soc_gain"),
            pl.col("_power_kwh").sum().alias("interval_power_kwh"),
            pl.col("_power_gain").sum().alias("interval_power_soc_gain")))


def session_capacity_estimates(measured: pl.DataFrame) -> pl.DataFrame:
    """Usable capacity (kWh) from each session whose certain charging intervals
    (`capacity_intervals`) added enough SoC: their energy into the battery over their SoC
    gain. The energy counter is preferred; the power signal serves cars without one."""
    c = pl.col
    counter_ok = c("interval_counter_soc_gain") >= CAPACITY_MIN_SOC_GAIN_PCT
    power_ok = c("interval_power_soc_gain") >= CAPACITY_MIN_SOC_GAIN_PCT
    return measured.with_columns(
        pl.when(counter_ok).then(c("interval_counter_kwh") / c("interval_counter_soc_gain") * 100.0)
        .when(power_ok).then(c("interval_power_kwh") / c("interval_power_soc_gain") * 100.0)
        .otherwise(None).alias("capacity_estimate_kwh"),
        pl.when(counter_ok).then(pl.lit("energy_added")).when(power_ok).then(pl.lit("power_signal"))
        .otherwise(None).alias("capacity_basis"))


# Range per SoC point is read only from readings at or above this SoC: near empty, a rounded
# range over a small SoC is noise.
RANGE_MIN_SOC_PCT = 20.0


def range_at_full(distinct: pl.DataFrame) -> pl.DataFrame:
    """Vehicle × UTC month: the range the car projects for a full battery, the median of its
    range readings scaled by the SoC of the same moment (`range_km / soc_pct × 100`), and how
    many readings it rests on. The car's range estimate moves with temperature and driving,
    so this is a second view of battery health, not a measurement: a fall that lasts across
    months is what it shows."""
    pairs = (_series(distinct, "range_km", "range_km")
             .join(_series(distinct, "soc_pct", "soc"), on=["vehicle_id", "reading_time"])
             .filter((pl.col("soc") >= RANGE_MIN_SOC_PCT) & (pl.col("range_km") > 0)))
    return (pairs.group_by("vehicle_id", pl.col("reading_time").dt.truncate("1mo").dt.date().alias("month"))
            .agg((pl.col("range_km") / pl.col("soc") * 100.0).median().alias("range_at_full_km"),
                 pl.len().cast(pl.Int64).alias("range_readings")))


def battery_health(sessions: pl.DataFrame, nominal: pl.DataFrame, ranges: pl.DataFrame | None = None) -> pl.DataFrame:
    """Vehicle × UTC month of the sessions' start: the usable capacity estimated from the
    month's sessions (median of their estimates; null when none qualified) and the state
    of health against the nominal capacity the vehicle reports; beside it, where the car
    reports range (`ranges`: `range_at_full`), the range at full charge and that range
    against the vehicle's first month of it (`range_index_pct`)."""
    if ranges is None:
        ranges = pl.DataFrame(schema={"vehicle_id": pl.String, "month": pl.Date, "range_at_full_km": pl.Float64,
                                      "range_readings": pl.Int64})
    first = ranges.sort("month").group_by("vehicle_id").agg(pl.col("range_at_full_km").first().alias("_first_range"))
    month = pl.col("started_at").dt.truncate("1mo").dt.date().alias("month")
    return (sessions.group_by("vehicle_id", month)
            .agg(pl.col("capacity_estimate_kwh").median().alias("estimated_capacity_kwh"),
                 pl.col("capacity_estimate_kwh").count().cast(pl.Int64).alias("sessions_used"),
                 pl.len().cast(pl.Int64).alias("sessions"),
                 pl.col("capacity_basis").drop_nulls().mode().sort().first().alias("capacity_basis"))
            .join(nominal, on="vehicle_id", how="left")
            .with_columns((pl.col("estimated_capacity_kwh") / pl.col("nominal_capacity_kwh") * 100.0)
                          .alias("state_of_health_pct"))
            .with_columns(pl.when(~pl.col("state_of_health_pct").is_between(*PLAUSIBLE_HEALTH_PCT))
                          .then(pl.lit("implausible")).otherwise(None).alias("health_flag"))
            .join(ranges, on=["vehicle_id", "month"], how="left")
            .join(first, on="vehicle_id", how="left")
            .with_columns((pl.col("range_at_full_km") / pl.col("_first_range") * 100.0).alias("range_index_pct"),
                          pl.col("range_readings").fill_null(0))
            .select("vehicle_id", "month", "estimated_capacity_kwh", "state_of_health_pct", "nominal_capacity_kwh",
                    "sessions_used", "sessions", "capacity_basis", "health_flag", "range_at_full_km",
                    "range_index_pct", "range_readings")
            .sort("vehicle_id", "month"))


def nominal_capacity(distinct: pl.DataFrame) -> pl.DataFrame:
    """The nominal capacity each vehicle reports (its latest value)."""
    return (_series(distinct, "battery_capacity_kwh", "nominal_capacity_kwh")
            .group_by("vehicle_id").agg(pl.col("nominal_capacity_kwh").sort_by("reading_time").last()))


def _midpoint_h(gap_h: pl.Expr) -> pl.Expr:
    return (gap_h / 2.0).clip(upper_bound=MAX_MIDPOINT_H)


def measure_sessions(sessions: pl.DataFrame, measured: pl.DataFrame, capacity: pl.DataFrame) -> pl.DataFrame:
    """Energy, SoC, power and the estimated charging interval of each session.

    `capacity` has `vehicle_id, capacity_kwh, capacity_source, share_low, share_high` (the
    usable capacity to turn SoC points into energy, where it came from, and the range of it
    that the energy's low and high estimates use).

    The charge began between the reading before the first charging one and that reading,
    and stopped between the last charging reading and the one after. Where a rate of
    charge is known (power signal, else energy over the charging readings), the estimated
    interval extends the observed one by the energy added outside it at that rate; else it
    extends to the midpoints. Time of use and the load profile spread energy over it.
    """
    key = ["vehicle_id", "plug_id"]
    frame = (sessions.join(measured, on=key, how="left")
             .join(capacity, on="vehicle_id", how="left"))
    c = pl.col
    soc_start = pl.coalesce(c("soc_before"), c("soc_first"))
    soc_end = pl.coalesce(c("soc_after"), c("soc_last"))
    soc_energy = ((soc_end - soc_start).clip(lower_bound=0.0) / 100.0 * c("capacity_kwh"))
    soc_gain = (soc_end - soc_start).clip(lower_bound=0.0)
    low_share, high_share = c("share_low").fill_null(1.0), c("share_high").fill_null(1.0)
    frame = frame.with_columns(
        soc_start.alias("soc_start_pct"), soc_end.alias("soc_end_pct"),
        pl.coalesce(c("counter_kwh"), soc_energy).alias("energy_added_kwh"),
        pl.when(c("counter_kwh").is_not_null()).then(pl.lit("energy_added"))
        .when(soc_energy.is_not_null()).then(pl.lit("soc_x_") + c("capacity_source"))
        .otherwise(None).alias("energy_source"),
        # the range the energy lies in: the counter is exact; SoC × capacity carries the SoC
        # readings' slack and, on the nominal capacity, the plausible usable share
        pl.coalesce(c("counter_kwh"), (soc_gain - SOC_SLACK_PCT).clip(lower_bound=0.0) / 100.0
                    * c("capacity_kwh") * low_share).alias("energy_low_kwh"),
        pl.coalesce(c("counter_kwh"), (soc_gain + SOC_SLACK_PCT) / 100.0 * c("capacity_kwh") * high_share)
        .alias("energy_high_kwh"),
    )
    # cumulative energy at the first and last charging readings
    at_first = pl.coalesce(
        pl.when(c("counter_first_at") == c("started_at")).then(c("counter_first_kwh")),
        pl.when(c("soc_first_at") == c("started_at"))
        .then((c("soc_first") - c("soc_start_pct")).clip(lower_bound=0.0) / 100.0 * c("capacity_kwh")))
    at_last = pl.coalesce(
        pl.when(c("counter_last_at") == c("ended_at")).then(c("counter_last_kwh")),
        pl.when(c("soc_last_at") == c("ended_at"))
        .then((c("soc_last") - c("soc_start_pct")).clip(lower_bound=0.0) / 100.0 * c("capacity_kwh")))
    observed_h = (c("ended_at") - c("started_at")).dt.total_microseconds() / 1e6 / 3600.0
    slope = pl.when(observed_h * 60.0 >= MIN_RATE_SPAN_MIN).then((at_last - at_first) / observed_h)
    frame = frame.with_columns(
        at_first.alias("_at_first"), at_last.alias("_at_last"),
        pl.coalesce(c("power_mean_kw"), pl.when(slope > 0).then(slope)).alias("_rate"))
    before_h = (c("started_at") - c("prev_reading_at")).dt.total_microseconds() / 1e6 / 3600.0
    after_h = (c("next_reading_at") - c("ended_at")).dt.total_microseconds() / 1e6 / 3600.0
    lead_h = pl.coalesce(c("_at_first") / c("_rate"), _midpoint_h(before_h)).clip(0.0, before_h).fill_null(0.0)
    tail_h = pl.coalesce((c("energy_added_kwh") - c("_at_last")) / c("_rate"), _midpoint_h(after_h)) \
        .clip(0.0, after_h).fill_null(0.0)
    frame = frame.with_columns(
        (c("started_at") - pl.duration(microseconds=(lead_h * 3.6e9).round().cast(pl.Int64)))
        .alias("charge_start_estimated_at"),
        (c("ended_at") + pl.duration(microseconds=(tail_h * 3.6e9).round().cast(pl.Int64)))
        .alias("charge_end_estimated_at"),
    )
    estimated_h = (c("charge_end_estimated_at") - c("charge_start_estimated_at")).dt.total_microseconds() / 1e6 / 3600.0
    energy_rate = pl.when(estimated_h > 0).then(c("energy_added_kwh") / estimated_h)
    frame = frame.with_columns(
        pl.coalesce(c("power_mean_kw"), energy_rate).alias("avg_power_kw"),
        pl.when(c("power_mean_kw").is_not_null()).then(pl.lit("power_signal"))
        .when(energy_rate.is_not_null()).then(pl.lit("energy_over_time")).otherwise(None).alias("power_source"),
    )
    frame = frame.with_columns(
        pl.coalesce(c("power_max_kw"), pl.max_horizontal(c("avg_power_kw"), c("_rate"))).alias("max_power_kw"),
        (c("avg_power_kw") > DC_FAST_KW).fill_null(False).alias("is_dc_fast"),
    ).drop("_at_first", "_at_last", "_rate")
    for name, dtype in (("status_current_type", pl.String), ("fast_charger_current_type", pl.String),
                        ("charge_limit_pct", pl.Float64), ("soc_stop_pct", pl.Float64), ("reported_full", pl.Boolean)):
        if name not in frame.columns:  # measured without the car's reports (hand-built in tests)
            frame = frame.with_columns(pl.lit(None, dtype).alias(name))
    return frame.with_columns(*current_type(), completion())


def current_type() -> list[pl.Expr]:
    """AC or DC: what the car said (its detailed charging status first, then its fast-charger
    signal), else from power (above `DC_FAST_KW` average: DC); `current_type_source` says which."""
    c = pl.col
    by_power = pl.when(c("avg_power_kw").is_not_null()).then(
        pl.when(c("avg_power_kw") > DC_FAST_KW).then(pl.lit("DC")).otherwise(pl.lit("AC")))
    return [
        pl.coalesce(c("status_current_type"), c("fast_charger_current_type"), by_power).alias("current_type"),
        pl.when(c("status_current_type").is_not_null()).then(pl.lit("charging_status"))
        .when(c("fast_charger_current_type").is_not_null()).then(pl.lit("fast_charger_signal"))
        .when(c("avg_power_kw").is_not_null()).then(pl.lit("power")).alias("current_type_source"),
    ]


def completion() -> pl.Expr:
    """`complete` when the session stopped at its charge limit (or the car said FULLY_CHARGED
    after it), `interrupted` when the first SoC reading after the charge (`soc_stop_pct`) shows
    it stopped below the limit (unplugged, or stopped by hand); null without a known limit, or
    when the last SoC seen is below the limit but no reading after the charge says where it
    stopped."""
    c = pl.col
    stopped_at = pl.coalesce(c("soc_stop_pct"), c("soc_end_pct"))
    floor = c("charge_limit_pct") - LIMIT_SLACK_PCT
    return (pl.when(c("reported_full").fill_null(False)).then(pl.lit("complete"))
            .when(c("charge_limit_pct").is_null() | stopped_at.is_null()).then(None)
            .when(stopped_at >= floor).then(pl.lit("complete"))
            .when(c("soc_stop_pct").is_not_null()).then(pl.lit("interrupted"))
            .alias("completion"))


def vehicle_capacity(estimates: pl.DataFrame, nominal: pl.DataFrame,
                     vehicles: pl.DataFrame | None = None) -> pl.DataFrame:
    """The usable capacity that turns a vehicle's SoC points into energy: the median of its
    sessions' estimates where it has any; else, where other cars of the same make and model
    (`vehicles`: vehicle_id, make, model) measured theirs, its nominal capacity times their
    median usable/nominal ratio (`model_ratio`, with the ratios' range); else its nominal
    capacity."""
    estimated = (estimates.filter(pl.col("capacity_estimate_kwh").is_not_null())
                 .group_by("vehicle_id").agg(pl.col("capacity_estimate_kwh").median().alias("estimated_kwh")))
    frame = (pl.concat([estimated.select("vehicle_id"), nominal.select("vehicle_id")]).unique()
             .join(estimated, on="vehicle_id", how="left").join(nominal, on="vehicle_id", how="left"))
    if vehicles is not None and not vehicles.is_empty():
        models = vehicles.select("vehicle_id", "make", "model").unique("vehicle_id")
        ratios = (frame.join(models, on="vehicle_id")
                  .filter(pl.col("estimated_kwh").is_not_null() & pl.col("nominal_capacity_kwh").is_not_null())
                  .with_columns((pl.col("estimated_kwh") / pl.col("nominal_capacity_kwh")).alias("ratio"))
                  .group_by("make", "model")
                  .agg(pl.col("ratio").median().alias("model_ratio"), pl.col("ratio").min().alias("ratio_low"),
                       pl.col("ratio").max().alias("ratio_high")))
        frame = frame.join(models, on="vehicle_id", how="left").join(ratios, on=["make", "model"], how="left")
    else:
        frame = frame.with_columns(pl.lit(None, pl.Float64).alias(c) for c in ("model_ratio", "ratio_low", "ratio_high"))
    by_model = pl.col("estimated_kwh").is_null() & pl.col("model_ratio").is_not_null()
    return frame.select(
        "vehicle_id",
        pl.coalesce("estimated_kwh", pl.col("nominal_capacity_kwh") * pl.col("model_ratio"),
                    "nominal_capacity_kwh").alias("capacity_kwh"),
        pl.when(pl.col("estimated_kwh").is_not_null()).then(pl.lit("estimated_capacity"))
        .when(by_model).then(pl.lit("model_ratio"))
        .otherwise(pl.lit("nominal_capacity")).alias("capacity_source"),
        # the share of the capacity above that the energy range spans (1 where it is the car's own)
        pl.when(by_model).then(pl.col("ratio_low") / pl.col("model_ratio"))
        .when(pl.col("estimated_kwh").is_null()).then(USABLE_SHARE_RANGE[0]).otherwise(1.0).alias("share_low"),
        pl.when(by_model).then(pl.col("ratio_high") / pl.col("model_ratio"))
        .when(pl.col("estimated_kwh").is_null()).then(USABLE_SHARE_RANGE[1]).otherwise(1.0).alias("share_high"))


def charging_sessions(readings: pl.DataFrame, vehicles: pl.DataFrame | None = None) -> pl.DataFrame:
    """All sessions with their times, SoC, energy and power, from readings (long format:
    vehicle_id, reading_time, metric, component, value)."""
    distinct = charging_readings(readings)
    sessions = find_sessions(plug_timeline(distinct))
    measured = session_capacity_estimates(session_readings(distinct, sessions))
    capacity = vehicle_capacity(measured, nominal_capacity(distinct), vehicles)
    return measure_sessions(sessions, measured, capacity)
