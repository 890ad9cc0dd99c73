"""Mileage marts: distance per vehicle and day, from the odometer alone."""


import dagster as dg
import polars as pl

from assets.marts.core import MART_POOL
from assets.marts.odometer import assess_odometer, daily_mileage as daily_mileage_frame, distinct_odometer_readings
from assets.marts.warehouse_io import lake_files, mart_result, replace_table
from assets.readings import readings
from pipelines.resources import LakeResource, WarehouseResource
from quality.gx_validation import validate
from quality.results import check_result
from quality.suites import daily_mileage_suite


def load_odometer(lake: LakeResource) -> pl.DataFrame:
    files = lake_files(lake)["readings"]
    if not files:
        return pl.DataFrame(schema={"vehicle_id": pl.String, "reading_time": pl.Datetime("us", "UTC"),
                                    "odometer_km": pl.Float64})
    return distinct_odometer_readings(
        pl.scan_parquet(files).filter(pl.col("metric") == "odometer_km")
        .select("vehicle_id", "reading_time", "metric", "value", "delivered_at").collect()
    )


@dg.asset(key_prefix="marts", group_name="marts", deps=[readings], pool=MART_POOL, kinds={"polars", "duckdb"},
          check_specs=[dg.AssetCheckSpec("daily_mileage_suite", asset=dg.AssetKey(["marts", "daily_mileage"]),
                                         description="GX suite `daily_mileage`: one row per vehicle and day, "
                                                     "distance within what a car can drive in a day.")])
def daily_mileage(lake: LakeResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Vehicle × UTC day: odometer at the first and last reading, distance driven (spikes
    excluded, rollbacks not counted), and the number of odometer readings."""
    frame = daily_mileage_frame(assess_odometer(load_odometer(lake)).readings)
    outcomes = [o.as_dict() for o in validate(frame, daily_mileage_suite())]
    with warehouse.connect() as con:
        con.register("daily_mileage_frame", frame)
        rows = replace_table(con, "daily_mileage", "SELECT * FROM daily_mileage_frame")
        result = mart_result(con, "daily_mileage", rows)
    return dg.MaterializeResult(
        metadata=result.metadata,
        check_results=[check_result(lake, "daily_mileage", "daily_mileage_suite", {"all": outcomes})],
    )
