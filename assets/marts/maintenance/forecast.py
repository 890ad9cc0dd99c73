"""Maintenance forecasts: when each vehicle's engine oil, tyres, 12 V battery and trouble
codes need attention, from the readings alone.

Every component follows the same shape: take the component's readings (one per reading
time), keep the segment since the last reset (an oil change or a re-inflation shows as a
jump back up), fit a robust trend (Theil–Sen: the median of the pairwise slopes, which
sensor noise and a stray reading cannot move) over the recent part of that segment, and
extrapolate it to the component's due value. Urgency comes from the days between the
vehicle's latest reading (its "as of" time, never the wall clock) and the due time, raised
by faults the trend itself reveals (a leaking tyre, a falling 12 V battery) and by active
trouble codes.
"""

from __future__ import annotations

import math

import polars as pl

from assets.marts.maintenance.config import MaintenanceConfig
from assets.marts.maintenance.rules import (
    FORECAST_SCHEMA, MICROS_PER_DAY, TIRE_COMPONENTS, active_trouble_codes, apply_reported_statuses,
    forecast_diagnostics, forecast_low_voltage, forecast_oil, forecast_tire, reported_statuses,
)
from assets.readings import distinct_readings as one_per_time


def distinct_readings(readings: pl.DataFrame) -> pl.DataFrame:
    """The distinct readings (`assets.readings.distinct_readings`) in time order, with the
    time as fractional days since the epoch for fitting."""
    return one_per_time(readings).with_columns(
        day=pl.col("reading_time").dt.epoch("us").cast(pl.Float64) / MICROS_PER_DAY)


def km_per_day(daily_distance: pl.DataFrame, as_of: pl.DataFrame, window_days: float) -> pl.DataFrame:
    """Each vehicle's distance per day over the `window_days` UTC days up to its as-of time
    (the as-of day counted up to the as-of time). `daily_distance`: vehicle_id, day,
    distance_km (marts.daily_mileage); `as_of`: vehicle_id, as_of."""
    days = int(window_days)
    joined = as_of.join(daily_distance, on="vehicle_id", how="left").with_columns(
        first_day=pl.col("as_of").dt.date() - pl.duration(days=days - 1))
    window = joined.group_by("vehicle_id").agg(
        pl.col("distance_km").filter(pl.col("day").is_between(pl.col("first_day"), pl.col("as_of").dt.date()))
        .drop_nulls().alias("distances"),
        (pl.col("as_of").first() - pl.col("first_day").first().cast(pl.Datetime("us", "UTC")))
        .dt.total_microseconds().alias("span_us"))
    # A vehicle's figure must not depend on the vehicles built beside it: the sum is exact
    # whatever the order of its terms (which a join does not keep), and the span is divided
    # as a column, not by a constant (which Polars may do by its inverse, depending on the
    # frame's shape).
    km = pl.col("distances").map_elements(math.fsum, return_dtype=pl.Float64)
    return window.select("vehicle_id", (km * MICROS_PER_DAY / pl.col("span_us")).alias("km_per_day"))


def forecast_maintenance(readings: pl.DataFrame, as_of: pl.DataFrame, daily_distance: pl.DataFrame,
                         vehicles: pl.DataFrame, config: MaintenanceConfig) -> pl.DataFrame:
    """The maintenance forecast: one row per vehicle and component.

    `readings`: readings-layer rows (vehicle_id, reading_time, metric, component, value,
    noted_at, event_id, delivered_at) of the maintenance metrics, and of the odometer in
    the deliveries that carried oil life; `as_of`: vehicle_id, as_of (the vehicle's latest
    reading of any metric); `daily_distance`: vehicle_id, day, distance_km
    (marts.daily_mileage); `vehicles`: vehicle_id, model (for placard pressures by model),
    powertrain (a car with an engine gets an oil row even when it sent no oil life)."""
    if as_of.is_empty():
        return pl.DataFrame(schema={**FORECAST_SCHEMA, "reported_status": pl.String})
    distance = km_per_day(daily_distance, as_of, config.trend_days)
    readings = distinct_readings(readings)
    # Oil life with the odometer the same delivery carried.
    odometer = readings.filter(pl.col("metric") == "odometer_km").select(
        "event_id", pl.col("value").alias("odometer_km")).unique("event_id")
    oil = readings.filter(pl.col("metric") == "oil_life_pct").join(odometer, on="event_id", how="left")
    trouble = active_trouble_codes(
        readings.filter(pl.col("metric") == "dtc_count"),
        readings.filter(pl.col("metric") == "dtc_code").rename({"component": "code"}))
    # each vehicle's latest service, by the record's own time (a record without one says not when)
    serviced = dict(readings.filter((pl.col("metric") == "service_at") & pl.col("noted_at").is_not_null())
                    .group_by("vehicle_id").agg(pl.col("noted_at").max()).select(
                        "vehicle_id", pl.col("noted_at").dt.epoch("us").cast(pl.Float64) / MICROS_PER_DAY)
                    .iter_rows())
    by_series = readings.partition_by("vehicle_id", "metric", "component", as_dict=True)
    oil_by_vehicle = oil.partition_by("vehicle_id", as_dict=True)
    model_of = dict(vehicles.select("vehicle_id", "model").iter_rows())
    has_engine = set(vehicles.filter(pl.col("powertrain").is_in(["ICE", "PHEV"]))["vehicle_id"])
    empty = readings.clear()

    rows = []
    for vehicle_id, as_of_time, km in as_of.join(distance, on="vehicle_id").sort("vehicle_id") \
            .select("vehicle_id", "as_of", "km_per_day").iter_rows():
        as_of_day = as_of_time.timestamp() * 1e6 / MICROS_PER_DAY
        oil_rows = oil_by_vehicle.get((vehicle_id,), oil.clear())
        if not oil_rows.is_empty() or vehicle_id in has_engine:  # battery-electric cars have no engine oil
            rows.append(forecast_oil(vehicle_id, oil_rows, km, as_of_day, config, serviced.get(vehicle_id)))
        placard = config.tire_placard_kpa.get(vehicle_id, config.tire_placard_kpa.get(model_of.get(vehicle_id)))
        for position, component in TIRE_COMPONENTS.items():
            tire = by_series.get((vehicle_id, "tire_pressure_kpa", position), empty)
            rows.append(forecast_tire(vehicle_id, component, tire, placard, as_of_day, config,
                                      serviced.get(vehicle_id)))
        lv = by_series.get((vehicle_id, "lv_battery_soc_pct", None), empty)
        rows.append(forecast_low_voltage(vehicle_id, lv, as_of_day, config))
        lists = by_series.get((vehicle_id, "dtc_count", None), empty)["day"].to_numpy()
        rows.append(forecast_diagnostics(vehicle_id, lists, trouble.filter(pl.col("vehicle_id") == vehicle_id),
                                         as_of_day, config))
    return apply_reported_statuses(pl.DataFrame(rows, schema=FORECAST_SCHEMA),
                                   reported_statuses(readings, as_of, config))
