"""Maintenance marts: when each vehicle's oil, tyres, 12 V battery and trouble codes need
attention (`marts.maintenance_forecast`), and the trouble codes active now
(`marts.active_trouble_codes`). The rules are in `assets/marts/maintenance/forecast.py`."""

import dagster as dg
import polars as pl

from assets.marts.core import MART_POOL
from assets.marts.maintenance.config import MaintenanceConfig
from assets.marts.maintenance.forecast import distinct_readings, forecast_maintenance
from assets.marts.maintenance.rules import MAINTENANCE_METRICS, TROUBLE_CODE_SCHEMA, active_trouble_codes
from assets.marts.warehouse_io import lake_files, mart_result, replace_table_from_frame
from assets.normalize import READINGS_SCHEMA
from assets.readings import readings
from storage.resources import LakeResource, WarehouseResource
from quality.gx_validation import validate
from quality.results import check_result
from quality.suites import maintenance_forecast_suite

READING_COLUMNS = ["event_id", "vehicle_id", "reading_time", "metric", "component", "value", "noted_at",
                   "delivered_at"]


def load_maintenance_readings(lake: LakeResource) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The maintenance metrics' readings (plus the odometer of each delivery that carried
    oil life), and each vehicle's as-of time: its latest reading of any metric."""
    files = lake_files(lake)["readings"]
    if not files:
        empty = pl.DataFrame(schema=READINGS_SCHEMA).select(READING_COLUMNS)
        return empty, pl.DataFrame(schema={"vehicle_id": pl.String, "as_of": pl.Datetime("us", "UTC")})
    scan = pl.scan_parquet(files)
    as_of = scan.group_by("vehicle_id").agg(pl.col("reading_time").max().alias("as_of")).collect()
    maintenance = scan.filter(pl.col("metric").is_in(MAINTENANCE_METRICS)).select(READING_COLUMNS)
    oil_events = maintenance.filter(pl.col("metric") == "oil_life_pct").select("event_id")
    odometer = scan.filter(pl.col("metric") == "odometer_km").join(oil_events, on="event_id", how="semi") \
        .select(READING_COLUMNS)
    return pl.concat([maintenance, odometer]).collect(), as_of


@dg.asset(key_prefix="marts", group_name="marts", pool=MART_POOL, kinds={"polars", "duckdb"},
          deps=[readings, dg.AssetKey(["marts", "daily_mileage"]), dg.AssetKey(["marts", "vehicles"])],
          check_specs=[dg.AssetCheckSpec("maintenance_forecast_suite",
                                         asset=dg.AssetKey(["marts", "maintenance_forecast"]),
                                         description="GX suite `maintenance_forecast`: one row per vehicle and "
                                                     "component, known components and urgencies.")])
def maintenance_forecast(config: MaintenanceConfig, lake: LakeResource,
                         warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Vehicle × component (engine oil, four tyres, 12 V battery, diagnostics): current value,
    trend per day, predicted due date and odometer, urgency and the readings behind it, as of
    each vehicle's latest reading."""
    maintenance_readings, as_of = load_maintenance_readings(lake)
    with warehouse.connect() as con:
        daily_distance = con.sql("SELECT vehicle_id, day, distance_km FROM marts.daily_mileage").pl()
        vehicles = con.sql("SELECT vehicle_id, model, powertrain FROM marts.vehicles").pl()
    frame = forecast_maintenance(maintenance_readings, as_of, daily_distance, vehicles, config)
    outcomes = [o.as_dict() for o in validate(frame, maintenance_forecast_suite())]
    with warehouse.connect() as con:
        rows = replace_table_from_frame(con, "maintenance_forecast", frame.sort("vehicle_id", "component"))
        counts = dict(frame.group_by("urgency").len().iter_rows())
        result = mart_result(con, "maintenance_forecast", rows, **{f"urgency_{k}": v for k, v in counts.items()})
    return dg.MaterializeResult(
        metadata=result.metadata,
        check_results=[check_result(lake, "maintenance_forecast", "maintenance_forecast_suite", {"all": outcomes})],
    )


@dg.asset(name="active_trouble_codes", key_prefix="marts", group_name="marts", pool=MART_POOL,
          kinds={"polars", "duckdb"}, deps=[readings])
def active_trouble_codes_mart(lake: LakeResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """One row per trouble code active in a vehicle's latest trouble-code list: its system
    (P powertrain, C chassis, B body, U network), severity, first-seen time and reports."""
    maintenance_readings, _ = load_maintenance_readings(lake)
    distinct = distinct_readings(maintenance_readings)
    frame = active_trouble_codes(
        distinct.filter(pl.col("metric") == "dtc_count"),
        distinct.filter(pl.col("metric") == "dtc_code").rename({"component": "code"}),
    ) if not distinct.is_empty() else pl.DataFrame(schema=TROUBLE_CODE_SCHEMA)
    with warehouse.connect() as con:
        rows = replace_table_from_frame(con, "active_trouble_codes", frame)
        return mart_result(con, "active_trouble_codes", rows)

