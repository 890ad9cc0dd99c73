"""Mileage marts for insurers: distance from the odometer alone, per day, per calendar
month and for any period, with the anomalies and the readings behind every figure.

The odometer series is assessed once per build (assets/marts/mileage/odometer.py) and persisted as
`marts.odometer_readings`; every other mileage mart, and the table macros an insurer calls
for any period, are built from that table, so they only read what is inside the warehouse.
"""

from __future__ import annotations

from pathlib import Path
from string import Template

import dagster as dg
import duckdb
import polars as pl

from assets.marts.core import MART_POOL, vehicles
from assets.marts.mileage.odometer import (
    GAP_HOURS, ODOMETER_SCHEMA, SOURCE_SCHEMA, TOLERANCE_KM, assess_odometer, daily_mileage as daily_mileage_frame,
    distinct_odometer_readings, odometer_anomalies as odometer_anomalies_frame,
)
from assets.marts.warehouse_io import (
    MART_SCHEMA, lake_files, mart_result, replace_table, replace_table_from_frame, sql,
)
from assets.readings import readings
from storage.resources import LakeResource, WarehouseResource
from quality.gx_validation import validate
from quality.results import check_result
from quality.suites import daily_mileage_suite, mileage_verification_suite, odometer_readings_suite

MILEAGE_SQL_DIR = Path(__file__).parent / "sql"


def load_odometer(lake: LakeResource) -> pl.DataFrame:
    """Distinct odometer readings of the lake, with where each came from: its event, the
    unit it was reported in, when it was delivered, and the landing file and line."""
    files = lake_files(lake)
    if not files["readings"]:
        return pl.DataFrame(schema={**ODOMETER_SCHEMA, **SOURCE_SCHEMA})
    odometer = distinct_odometer_readings(
        pl.scan_parquet(files["readings"]).filter(pl.col("metric") == "odometer_km")
        .select("vehicle_id", "reading_time", "metric", "component", "value", "delivered_at", "event_id", "source_unit")
        .collect()
    )
    lines = (pl.scan_parquet(files["deliveries"]).select("event_id", "source_file", pl.col("line_no").cast(pl.Int64))
             .collect() if files["deliveries"] else pl.DataFrame(schema={"event_id": pl.String, "source_file": pl.String,
                                                                         "line_no": pl.Int64}))
    return odometer.join(lines, on="event_id", how="left").select(*ODOMETER_SCHEMA, *SOURCE_SCHEMA)


def read_assessed(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    return con.sql(f"SELECT * FROM {MART_SCHEMA}.odometer_readings ORDER BY vehicle_id, reading_time").pl()


def mileage_sql(name: str, **fragments: str) -> str:
    """`sql/mileage_<name>.sql` with the odometer's constants (and any fragments) filled in."""
    return Template(sql(f"mileage_{name}", MILEAGE_SQL_DIR)).substitute(
        GAP_SECONDS=repr(GAP_HOURS * 3600), TOLERANCE_KM=repr(TOLERANCE_KM), **fragments)


def verification_sql(periods_sql: str) -> str:
    """The verified mileage of every period that `periods_sql` selects
    (`vehicle_id, period_start, period_end, starts_at, ends_at`)."""
    return (f"WITH periods AS ({periods_sql}), evidence AS ({mileage_sql('evidence')}) "
            f"SELECT * FROM ({mileage_sql('verification')})")


def write_odometer_readings(con: duckdb.DuckDBPyConnection, assessed: pl.DataFrame) -> int:
    return replace_table_from_frame(con, "odometer_readings", assessed.sort("vehicle_id", "reading_time"))


def write_mileage_verification(con: duckdb.DuckDBPyConnection) -> int:
    """(Re)create the macros marts.verified_mileage(...) and marts.mileage_evidence(...)
    (and their helpers), then marts.mileage_verification, from marts.odometer_readings
    and marts.vehicles."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {MART_SCHEMA}").fetchall()
    period = "FROM marts.mileage_period(vehicle_id, start_date, end_date)"
    con.execute(mileage_sql("macros", EVIDENCE=mileage_sql("evidence"), VERIFIED_MILEAGE=verification_sql(period)))
    return replace_table(con, "mileage_verification",
                         verification_sql(mileage_sql("months")) + " ORDER BY vehicle_id, period_start")


@dg.asset(key_prefix="marts", group_name="marts", deps=[readings], pool=MART_POOL, kinds={"polars", "duckdb"},
          check_specs=[dg.AssetCheckSpec("odometer_readings_suite", asset=dg.AssetKey(["marts", "odometer_readings"]),
                                         blocking=True,
                                         description="GX suite `odometer_readings`: odometer non-negative and not "
                                                     "decreasing outside anomalies; one reading per vehicle and time.")])
def odometer_readings(lake: LakeResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Every distinct odometer reading, assessed over each vehicle's whole series: its
    status (`valid`, `spike`, `rollback`, `implausible_speed`), the distance credited to it,
    the valid reading before it, whether a gap ends at it, and its sources (event, unit,
    delivery time, landing file and line). The one assessment every mileage mart uses."""
    assessed = assess_odometer(load_odometer(lake)).readings
    steps = assessed.with_columns(step_km=pl.col("odometer_km") - pl.col("previous_odometer_km"))
    outcomes = [o.as_dict() for o in validate(steps, odometer_readings_suite(TOLERANCE_KM))]
    with warehouse.connect() as con:
        rows = write_odometer_readings(con, assessed)
        result = mart_result(con, "odometer_readings", rows, spikes=int((assessed["status"] == "spike").sum()))
    return dg.MaterializeResult(
        metadata=result.metadata,
        check_results=[check_result(lake, "odometer_readings", "odometer_readings_suite", {"all": outcomes})],
    )


@dg.asset(key_prefix="marts", group_name="marts", deps=[odometer_readings], pool=MART_POOL, kinds={"polars", "duckdb"})
def odometer_anomalies(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """One row per odometer anomaly (`ROLLBACK`, `SPIKE`, `IMPLAUSIBLE_SPEED`, `GAP`), at the
    reading that shows it, with the odometer before and after and what was seen."""
    with warehouse.connect() as con:
        frame = odometer_anomalies_frame(read_assessed(con))
        rows = replace_table_from_frame(con, "odometer_anomalies", frame)
        return mart_result(con, "odometer_anomalies", rows,
                           **{kind.lower(): int((frame["kind"] == kind).sum()) for kind in frame["kind"].unique()})


@dg.asset(key_prefix="marts", group_name="marts", deps=[odometer_readings], pool=MART_POOL, kinds={"polars", "duckdb"},
          check_specs=[dg.AssetCheckSpec("daily_mileage_suite", asset=dg.AssetKey(["marts", "daily_mileage"]),
                                         description="GX suite `daily_mileage`: one row per vehicle and day, "
                                                     "distance within what a car can drive in a day.")])
def daily_mileage(lake: LakeResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Vehicle × UTC day: odometer at the first and last reading, distance driven (spikes
    excluded, rollbacks not counted), and the number of odometer readings."""
    with warehouse.connect() as con:
        frame = daily_mileage_frame(read_assessed(con))
        outcomes = [o.as_dict() for o in validate(frame, daily_mileage_suite())]
        rows = replace_table_from_frame(con, "daily_mileage", frame)
        result = mart_result(con, "daily_mileage", rows)
    return dg.MaterializeResult(
        metadata=result.metadata,
        check_results=[check_result(lake, "daily_mileage", "daily_mileage_suite", {"all": outcomes})],
    )


@dg.asset(key_prefix="marts", group_name="marts", deps=[odometer_readings, vehicles], pool=MART_POOL,
          kinds={"duckdb"},
          check_specs=[dg.AssetCheckSpec("mileage_verification_suite",
                                         asset=dg.AssetKey(["marts", "mileage_verification"]),
                                         description="GX suite `mileage_verification`: one row per vehicle and "
                                                     "month, statuses from the contract, coverage 0–100 %.")])
def mileage_verification(lake: LakeResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Every vehicle × calendar month (UTC): odometer at the start and end, distance, the
    readings behind it, coverage, anomalies and status (`VERIFIED`, `NEEDS_REVIEW`,
    `INSUFFICIENT_DATA`) with the reason. Also (re)creates the macros
    `marts.verified_mileage(vehicle_id, start_date, end_date)` (the same for any period) and
    `marts.mileage_evidence(vehicle_id, start_date, end_date)` (the readings behind it)."""
    with warehouse.connect() as con:
        rows = write_mileage_verification(con)
        table = con.sql(f"SELECT * EXCLUDE (anomalies) FROM {MART_SCHEMA}.mileage_verification").pl()
        statuses = table["status"].value_counts().rows()
        result = mart_result(con, "mileage_verification", rows, **{s.lower(): n for s, n in statuses})
    outcomes = [o.as_dict() for o in validate(table, mileage_verification_suite())]
    return dg.MaterializeResult(
        metadata=result.metadata,
        check_results=[check_result(lake, "mileage_verification", "mileage_verification_suite", {"all": outcomes})],
    )
