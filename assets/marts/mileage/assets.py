"""Mileage marts for insurers: distance from the odometer alone, per day, per calendar
month and for any period, with the anomalies and the readings behind every figure.

The odometer series is assessed once per build (assets/marts/mileage/odometer.py) and persisted as
`marts.odometer_readings`; every other mileage mart, and the table macros an insurer calls
for any period, are built from that table, so they only read what is inside the warehouse.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path
from string import Template

import duckdb
import polars as pl

from assets.marts.core import vehicles
from assets.marts.mileage.odometer import (
    GAP_HOURS, ODOMETER_SCHEMA, SOURCE_SCHEMA, TOLERANCE_KM, assess_odometer, daily_mileage as daily_mileage_frame,
    distinct_odometer_readings, odometer_anomalies as odometer_anomalies_frame,
)
from assets.marts.mileage.services import SERVICE_RECORD_SCHEMA, check_service_odometers, service_records as records_of
from assets.marts.build_state import MartScope
from assets.marts.protocol import SCOPE_VIEW, Built, MartBuild, MartCheck, mart
from assets.marts.warehouse_io import MART_SCHEMA, lake_scan, sql
from assets.readings import readings
from storage.resources import LakeResource
from quality.suites import daily_mileage_suite, mileage_verification_suite, odometer_readings_suite

MILEAGE_SQL_DIR = Path(__file__).parent / "sql"
DUCKDB_TYPES = {pl.String: "VARCHAR", pl.Float64: "DOUBLE", pl.Datetime("us", "UTC"): "TIMESTAMPTZ"}


def load_odometer(lake: LakeResource, scope: MartScope | None = None) -> pl.DataFrame:
    """Distinct odometer readings of the lake (of the scope's vehicles), with where each came
    from: its event, the unit it was reported in, when it was delivered, and the landing
    file and line."""
    scan = lake_scan(lake, "readings").filter(pl.col("metric") == "odometer_km")
    odometer = distinct_odometer_readings(
        (scope.select(scan) if scope is not None else scan)
        .select("vehicle_id", "reading_time", "metric", "component", "value", "delivered_at", "event_id", "source_unit")
        .collect()
    )
    deliveries = lake_scan(lake, "deliveries")
    lines = ((scope.select(deliveries) if scope is not None else deliveries)
             .select("event_id", "source_file", pl.col("line_no").cast(pl.Int64)).collect())
    return odometer.join(lines, on="event_id", how="left").select(*ODOMETER_SCHEMA, *SOURCE_SCHEMA)


def read_assessed(con: duckdb.DuckDBPyConnection, scope: MartScope | None = None) -> pl.DataFrame:
    """marts.odometer_readings (the scope's vehicles' rows), by vehicle and time."""
    where = f"WHERE vehicle_id IN (SELECT vehicle_id FROM {SCOPE_VIEW})" if scope is not None and not scope.full else ""
    return con.sql(f"SELECT * FROM {MART_SCHEMA}.odometer_readings {where} ORDER BY vehicle_id, reading_time").pl()


def mileage_sql(name: str, **fragments: str) -> str:
    """`sql/mileage_<name>.sql` with the odometer's constants (and any fragments) filled in."""
    return Template(sql(f"mileage_{name}", MILEAGE_SQL_DIR)).substitute(
        GAP_SECONDS=repr(GAP_HOURS * 3600), TOLERANCE_KM=repr(TOLERANCE_KM), **fragments)


def verification_sql(periods_sql: str) -> str:
    """The verified mileage of every period that `periods_sql` selects
    (`vehicle_id, period_start, period_end, starts_at, ends_at`)."""
    return (f"WITH periods AS ({periods_sql}), evidence AS ({mileage_sql('evidence')}) "
            f"SELECT * FROM ({mileage_sql('verification')})")


def create_mileage_macros(con: duckdb.DuckDBPyConnection) -> None:
    """(Re)create the macros marts.verified_mileage(...) and marts.mileage_evidence(...)
    (and their helpers), over marts.odometer_readings, marts.vehicles and marts.service_records."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {MART_SCHEMA}").fetchall()
    # the statements read the service records (the `service_records` mart); a warehouse built
    # without them has none, not an error
    columns = ", ".join(f'"{name}" {DUCKDB_TYPES[dtype]}' for name, dtype in SERVICE_RECORD_SCHEMA.items())
    con.execute(f"CREATE TABLE IF NOT EXISTS {MART_SCHEMA}.service_records ({columns})").fetchall()
    period = "FROM marts.mileage_period(vehicle_id, start_date, end_date)"
    con.execute(mileage_sql("macros", EVIDENCE=mileage_sql("evidence"), VERIFIED_MILEAGE=verification_sql(period)))


def monthly_verification_sql(vehicles_view: str | None = None) -> str:
    """The verified mileage of every vehicle × calendar month: marts.mileage_verification
    (of the vehicles in `vehicles_view`, given one)."""
    months = mileage_sql("months")
    if vehicles_view is not None:
        months = f"SELECT * FROM ({months}) WHERE vehicle_id IN (SELECT vehicle_id FROM {vehicles_view})"
    return verification_sql(months) + " ORDER BY vehicle_id, period_start"


def months_unchanged(build: MartBuild) -> MartScope:
    """The scope, or a full build when the fleet's months changed: every vehicle gets a row
    for every month from the fleet's first odometer reading to its last."""
    span = (f"SELECT date_trunc('month', min(day))::DATE, date_trunc('month', max(day))::DATE "
            f"FROM {MART_SCHEMA}.odometer_readings")
    built = f"SELECT min(period_start), max(period_start) FROM {MART_SCHEMA}.mileage_verification"
    if build.con.sql(span).fetchall() != build.con.sql(built).fetchall():
        return replace(build.scope, vehicles=None)
    return build.scope


def odometer_steps(assessed: pl.DataFrame) -> pl.DataFrame:
    """The assessed readings with the step from the valid reading before each, for the suite."""
    return assessed.with_columns(step_km=pl.col("odometer_km") - pl.col("previous_odometer_km"))


@mart(grain=("vehicle_id", "reading_time"), deps=[readings], kinds=("polars", "duckdb"), scoped=True,
      check=MartCheck(partial(odometer_readings_suite, TOLERANCE_KM), blocking=True, prepare=odometer_steps,
                      description="GX suite `odometer_readings`: odometer non-negative and not decreasing outside "
                                  "anomalies; one reading per vehicle and time."))
def odometer_readings(build: MartBuild) -> Built:
    """Every distinct odometer reading, assessed over each vehicle's whole series: its
    status (`valid`, `spike`, `rollback`, `implausible_speed`), the distance credited to it,
    the valid reading before it, whether a gap ends at it, and its sources (event, unit,
    delivery time, landing file and line). The one assessment every mileage mart uses."""
    assessed = assess_odometer(load_odometer(build.lake, build.scope)).readings.sort("vehicle_id", "reading_time")
    return Built(assessed, {"spikes": int((assessed["status"] == "spike").sum())})


@mart(grain=("vehicle_id", "detected_at", "kind"), deps=[odometer_readings], kinds=("polars", "duckdb"), scoped=True)
def odometer_anomalies(build: MartBuild) -> Built:
    """One row per odometer anomaly (`ROLLBACK`, `SPIKE`, `IMPLAUSIBLE_SPEED`, `GAP`), at the
    reading that shows it, with the odometer before and after and what was seen."""
    frame = odometer_anomalies_frame(read_assessed(build.con, build.scope))
    return Built(frame, {kind.lower(): int((frame["kind"] == kind).sum()) for kind in frame["kind"].unique()})


@mart(grain=("vehicle_id", "day"), deps=[odometer_readings], kinds=("polars", "duckdb"), scoped=True,
      check=MartCheck(daily_mileage_suite, description="GX suite `daily_mileage`: one row per vehicle and day, "
                                                       "distance within what a car can drive in a day."))
def daily_mileage(build: MartBuild) -> pl.DataFrame:
    """Vehicle × UTC day: odometer at the first and last reading, distance driven (spikes
    excluded, rollbacks not counted), and the number of odometer readings."""
    return daily_mileage_frame(read_assessed(build.con, build.scope))


def load_service_readings(lake: LakeResource, scope: MartScope | None = None) -> pl.DataFrame:
    """The readings of service records' odometers (component: record id; noted_at: its time)."""
    columns = ["vehicle_id", "metric", "component", "value", "noted_at", "delivered_at"]
    scan = lake_scan(lake, "readings").filter(pl.col("metric") == "service_odometer_km")
    return (scope.select(scan) if scope is not None else scan).select(columns).collect()


@mart(grain=("vehicle_id", "serviced_at", "record_id"), deps=[readings, odometer_readings], kinds=("polars", "duckdb"),
      scoped=True)
def service_records(build: MartBuild) -> Built:
    """One row per service record with an odometer (`service-records`): the odometer the service
    wrote down beside the car's own at that time, and whether they agree: independent evidence
    for the mileage statements of its month (a disagreement needs review)."""
    records = records_of(load_service_readings(build.lake, build.scope))
    frame = check_service_odometers(records, read_assessed(build.con, build.scope)) if not records.is_empty() \
        else pl.DataFrame(schema=SERVICE_RECORD_SCHEMA)
    return Built(frame, {c: int((frame["odometer_check"] == c).sum()) for c in ("agrees", "disagrees", "unverifiable")})


@mart(grain=("vehicle_id", "period_start"), deps=[odometer_readings, vehicles, service_records], scoped=True,
      widen_scope=months_unchanged,
      check=MartCheck(mileage_verification_suite,
                      description="GX suite `mileage_verification`: one row per vehicle and month, statuses from "
                                  "the contract, coverage 0–100 %."))
def mileage_verification(build: MartBuild) -> str:
    """Every vehicle × calendar month (UTC): odometer at the start and end, distance, the
    readings behind it, coverage, anomalies and status (`VERIFIED`, `NEEDS_REVIEW`,
    `INSUFFICIENT_DATA`) with the reason. Also (re)creates the macros
    `marts.verified_mileage(vehicle_id, start_date, end_date)` (the same for any period) and
    `marts.mileage_evidence(vehicle_id, start_date, end_date)` (the readings behind it)."""
    create_mileage_macros(build.con)
    return monthly_verification_sql(None if build.scope.full else SCOPE_VIEW)
