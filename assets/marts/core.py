"""Marts every user shares: the vehicles, their errors, and the pipeline's own health."""

import json

import dagster as dg
import polars as pl

from assets.marts.warehouse_io import attach_lake, mart_result, replace_table, replace_table_from_frame, sql
from assets.raw import raw_deliveries
from assets.readings import readings
from quality.accounting import lake_signal_accounting
from quality.results import check_result
from storage.resources import LakeResource, WarehouseResource

MART_POOL = "warehouse"  # DuckDB allows one writer per file: every mart asset runs in this pool


def _sql_mart(name: str, description: str, deps: list):
    @dg.asset(name=name, key_prefix="marts", group_name="marts", deps=deps, pool=MART_POOL,
              kinds={"duckdb"}, description=description)
    def _mart(lake: LakeResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
        with warehouse.connect() as con:
            attach_lake(con, lake)
            rows = replace_table(con, name, sql(name))
            return mart_result(con, name, rows)

    return _mart


vehicles = _sql_mart("vehicles", "One row per vehicle: make, model, year, powertrain, battery capacity, "
                     "first and last seen.", [raw_deliveries, readings])
vehicle_errors = _sql_mart("vehicle_errors", "One row per error a VEHICLE_ERROR delivery reported.", [raw_deliveries])


@dg.asset(key_prefix="marts", group_name="marts", deps=[raw_deliveries, readings], pool=MART_POOL, kinds={"duckdb"},
          check_specs=[dg.AssetCheckSpec(
              "lake_signals_accounted", asset=dg.AssetKey(["marts", "pipeline_health"]), blocking=True,
              description="Every raw signal the lake holds, over all days, is a reading, a signal error or "
                          "quarantined: no signal is left without an outcome.")])
def pipeline_health(lake: LakeResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """One row per landing day: deliveries landed, parsed, duplicated, quarantined; files
    quarantined; readings, signal errors and quarantined signals."""
    with warehouse.connect() as con:
        attach_lake(con, lake)
        built = mart_result(con, "pipeline_health", replace_table(con, "pipeline_health", sql("pipeline_health")))
    accounted = check_result(lake, "pipeline_health", "lake_signals_accounted", {"lake": [lake_signal_accounting(lake)]})
    return dg.MaterializeResult(metadata=built.metadata, check_results=[accounted])


@dg.asset(key_prefix="marts", group_name="marts", pool=MART_POOL, kinds={"duckdb"},
          deps=[raw_deliveries, readings, pipeline_health, dg.AssetKey(["marts", "daily_mileage"]),
                dg.AssetKey(["marts", "maintenance_forecast"]), dg.AssetKey(["marts", "charging_sessions"]),
                dg.AssetKey(["marts", "battery_health"]), dg.AssetKey(["marts", "odometer_readings"]),
                dg.AssetKey(["marts", "mileage_verification"])])
def quality_results(lake: LakeResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The latest result of every quality check, per asset, check and scope (day or 'all'),
    with the failing expectations' details as JSON."""
    rows = [json.loads(p.read_text()) for p in sorted(lake.path("quality").glob("*/*/*.json"))]
    frame = pl.DataFrame(
        [{**r, "details": json.dumps(r["details"], default=str)} for r in rows],
        schema={"asset": pl.String, "check": pl.String, "scope": pl.String, "passed": pl.Boolean,
                "checked_at": pl.String, "details": pl.String},
    ).with_columns(pl.col("checked_at").str.to_datetime(time_zone="UTC"))
    with warehouse.connect() as con:
        count = replace_table_from_frame(con, "quality_results", frame.sort("asset", "check", "scope"))
        return mart_result(con, "quality_results", count, failed=int((~frame["passed"]).sum()))
