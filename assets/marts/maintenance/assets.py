"""Maintenance marts: when each vehicle's oil, tyres, 12 V battery and trouble codes need
attention (`marts.maintenance_forecast`), and the trouble codes active now
(`marts.active_trouble_codes`). The per-component rules are in `rules.py`, the fleet loop in `forecast.py`."""

import polars as pl

from assets.marts.core import vehicles
from assets.marts.maintenance.config import MaintenanceConfig
from assets.marts.maintenance.forecast import distinct_readings, forecast_maintenance
from assets.marts.maintenance.rules import (MAINTENANCE_METRICS, TROUBLE_CODE_METRICS, TROUBLE_CODE_SCHEMA,
                                           active_trouble_codes as active_codes)
from assets.marts.mileage.assets import daily_mileage
from assets.marts.build_state import MartScope
from assets.marts.protocol import Built, MartBuild, MartCheck, mart
from assets.marts.warehouse_io import lake_scan
from assets.readings import readings
from quality.suites import maintenance_forecast_suite
from storage.resources import LakeResource

READING_COLUMNS = ["event_id", "vehicle_id", "reading_time", "metric", "component", "value", "noted_at",
                   "delivered_at"]


def load_maintenance_readings(lake: LakeResource, scope: MartScope | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The maintenance metrics' readings (plus the odometer of each delivery that carried
    oil life), and each vehicle's as-of time: its latest reading of any metric; of the
    scope's vehicles."""
    scan = lake_scan(lake, "readings")
    scan = scope.select(scan) if scope is not None else scan
    as_of = scan.group_by("vehicle_id").agg(pl.col("reading_time").max().alias("as_of")).collect()
    maintenance = scan.filter(pl.col("metric").is_in(MAINTENANCE_METRICS)).select(READING_COLUMNS)
    oil_events = maintenance.filter(pl.col("metric") == "oil_life_pct").select("event_id")
    odometer = scan.filter(pl.col("metric") == "odometer_km").join(oil_events, on="event_id", how="semi") \
        .select(READING_COLUMNS)
    return pl.concat([maintenance, odometer]).collect(), as_of


@mart(grain=("vehicle_id", "component"), config=MaintenanceConfig, kinds=("polars", "duckdb"),
      deps=[readings, daily_mileage, vehicles], scoped=True,
      check=MartCheck(maintenance_forecast_suite, "GX suite `maintenance_forecast`: one row per vehicle and "
                                                  "component, known components and urgencies."))
def maintenance_forecast(build: MartBuild) -> Built:
    """Vehicle × component (engine oil, four tyres, 12 V battery, diagnostics): current value,
    trend per day, predicted due date and odometer, urgency and the readings behind it, as of
    each vehicle's latest reading."""
    maintenance_readings, as_of = load_maintenance_readings(build.lake, build.scope)
    daily_distance = build.scope.select(build.con.sql("SELECT vehicle_id, day, distance_km FROM marts.daily_mileage").pl())
    fleet = build.scope.select(build.con.sql("SELECT vehicle_id, model, powertrain FROM marts.vehicles").pl())
    frame = forecast_maintenance(maintenance_readings, as_of, daily_distance, fleet, build.config)
    counts = dict(frame.group_by("urgency").len().iter_rows())
    return Built(frame.sort("vehicle_id", "component"), {f"urgency_{k}": v for k, v in counts.items()})


@mart(grain=("vehicle_id", "code"), deps=[readings], kinds=("polars", "duckdb"), scoped=True)
def active_trouble_codes(build: MartBuild) -> pl.DataFrame:
    """One row per trouble code active in a vehicle's latest trouble-code list: its system
    (P powertrain, C chassis, B body, U network), severity, first-seen time and reports."""
    scan = build.scope.select(lake_scan(build.lake, "readings"))
    distinct = distinct_readings(scan.filter(pl.col("metric").is_in(TROUBLE_CODE_METRICS)).select(READING_COLUMNS)
                                 .collect())
    if distinct.is_empty():
        return pl.DataFrame(schema=TROUBLE_CODE_SCHEMA)
    return active_codes(distinct.filter(pl.col("metric") == "dtc_count"),
                        distinct.filter(pl.col("metric") == "dtc_code").rename({"component": "code"}))
