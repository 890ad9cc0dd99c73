"""Marts every user shares: the vehicles, their errors, and the pipeline's own health."""

import json

import dagster as dg
import polars as pl

from assets.marts.protocol import MART_AUTOMATION, MART_GROUP, MART_POOL, MartCheck, mart
from assets.marts.warehouse_io import mart_result, replace_table_from_frame, sql
from assets.raw import raw_deliveries
from assets.readings import readings
from quality.accounting import lake_signal_accounting
from storage.resources import LakeResource, WarehouseResource


@mart(grain=("vehicle_id",), deps=[raw_deliveries, readings])
def vehicles(build) -> str:
    """One row per vehicle: make, model, year, powertrain, battery capacity, first and last seen."""
    return sql("vehicles")


@mart(grain=("event_id", "type", "code"), deps=[raw_deliveries])
def vehicle_errors(build) -> str:
    """One row per error a VEHICLE_ERROR delivery reported."""
    return sql("vehicle_errors")


@mart(grain=("day",), deps=[raw_deliveries, readings],
      check=MartCheck(None, blocking=True, name="lake_signals_accounted",
                      evaluate=lambda build: {"lake": [lake_signal_accounting(build.lake)]},
                      description="Every raw signal the lake holds, over all days, is a reading, a signal error "
                                  "or quarantined: no signal is left without an outcome."))
def pipeline_health(build) -> str:
    """One row per landing day: deliveries landed, parsed, duplicated, quarantined; files
    quarantined; readings, signal errors and quarantined signals."""
    return sql("pipeline_health")


QUALITY_RESULTS_SCHEMA = {"asset": pl.String, "check": pl.String, "scope": pl.String, "passed": pl.Boolean,
                          "checked_at": pl.String, "details": pl.String}


def quality_results_asset(checked: list[dg.AssetKey]) -> dg.AssetsDefinition:
    """`marts.quality_results`, after every asset in `checked` (the assets that declare
    checks: the definitions pass them, so a new mart's check cannot be missed)."""

    @dg.asset(key_prefix=MART_GROUP, group_name=MART_GROUP, pool=MART_POOL, kinds={"duckdb"}, deps=checked,
              automation_condition=MART_AUTOMATION)
    def quality_results(lake: LakeResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
        """The latest result of every quality check, per asset, check and scope (day or 'all'),
        with the failing expectations' details as JSON."""
        rows = [json.loads(p.read_text()) for p in sorted(lake.path("quality").glob("*/*/*.json"))]
        frame = pl.DataFrame(
            [{**r, "details": json.dumps(r["details"], default=str)} for r in rows], schema=QUALITY_RESULTS_SCHEMA,
        ).with_columns(pl.col("checked_at").str.to_datetime(time_zone="UTC"))
        with warehouse.connect() as con:
            count = replace_table_from_frame(con, "quality_results", frame.sort("asset", "check", "scope"))
            return mart_result(con, "quality_results", count, failed=int((~frame["passed"]).sum()))

    return quality_results
