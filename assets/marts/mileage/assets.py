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
        (within(scan, scope, "reading_time") if scope is not None else scan)
        .select("vehicle_id", "reading_time", "metric", "component", "value", "delivered_at", "event_id", "source_unit")
        .collect()
    )
    deliveries = lake_scan(lake, "deliveries")
    lines = ((scope.select(deliveries) if scope is not None else deliveries)
             .select("event_id", "source_file", pl.col("line_no").cast(pl.Int64)).collect())
    return odometer.join(lines, on="event_id", how="left").select(*ODOMETER_SCHEMA, *SOURCE_SCHEMA)


def within(scan: pl.LazyFrame, scope: MartScope, column: str) -> pl.LazyFrame:
    """The rows of the scope's vehicles from each vehicle's `since` on (all its rows where
    that is null); `column` is a reading time. Days before the earliest `since` are not read."""
    if scope.full:
        return scan
    bounds = scope.frame()
    first = bounds.get_column("since_day").min() if bounds.get_column("since").null_count() == 0 else None
    if first is not None:
        scan = scan.filter(pl.col("day") >= first)  # the readings' partitions
    return (scan.join(bounds.lazy().select("vehicle_id", "since"), on="vehicle_id")
            .filter(pl.col("since").is_null() | (pl.col(column) >= pl.col("since"))).drop("since"))


def read_assessed(con: duckdb.DuckDBPyConnection, scope: MartScope | None = None,
                  window: tuple[str, str] | None = None) -> pl.DataFrame:
    """marts.odometer_readings (the scope's vehicles' rows; with `window`, a column and the
    scope's bound on it, their rows from then on), by vehicle and time."""
    where = ""
    if scope is not None and not scope.full:
        bound = f" AND (s.since IS NULL OR o.{window[0]} >= s.{window[1]})" if window else ""
        where = f"WHERE EXISTS (SELECT 1 FROM {SCOPE_VIEW} s WHERE s.vehicle_id = o.vehicle_id{bound})"
    return con.sql(f"SELECT o.* FROM {MART_SCHEMA}.odometer_readings o {where} "
                   "ORDER BY o.vehicle_id, o.reading_time").pl()


def odometer_restarts(build: MartBuild) -> MartScope:
    """Where each vehicle's assessment must start again: at its last assessed reading before
    its new data (whether that one is a spike depends on the reading after it; every reading
    before it keeps its verdict), or from its first reading when fewer than three precede the
    new data or no valid one precedes the restart (the first readings' spike rule looks two
    ahead). Rows from the restart on are rebuilt; the assessment resumes from the last
    valid reading before it (`resume_points`)."""
    restarts = build.con.sql(
        f"SELECT s.vehicle_id, CASE WHEN count(o.reading_time) >= 3 THEN max(o.reading_time) END AS restart, "
        f"min(o.reading_time) FILTER (WHERE o.status <> 'spike') AS first_valid "
        f"FROM {SCOPE_VIEW} s LEFT JOIN {MART_SCHEMA}.odometer_readings o "
        f"ON o.vehicle_id = s.vehicle_id AND o.reading_time < s.since GROUP BY s.vehicle_id").fetchall()
    since = {v: restart if restart is not None and first_valid is not None and first_valid < restart else None
             for v, restart, first_valid in restarts}
    return replace(build.scope, since=since)


def resume_points(build: MartBuild) -> pl.DataFrame:
    """For each vehicle assessed from a restart: its last valid reading before the restart,
    with the high-water mark there (what `assess_odometer` resumes from)."""
    return build.con.sql(
        f"SELECT o.vehicle_id, arg_max(o.reading_time, o.reading_time) AS reading_time, "
        f"arg_max(o.odometer_km, o.reading_time) AS odometer_km, arg_max(o.high_water_km, o.reading_time) AS high_water_km "
        f"FROM {MART_SCHEMA}.odometer_readings o JOIN {SCOPE_VIEW} s ON s.vehicle_id = o.vehicle_id "
        f"WHERE o.reading_time < s.since AND o.status <> 'spike' GROUP BY o.vehicle_id").pl()


def has_high_water(build: MartBuild) -> bool:
    return bool(build.con.execute("SELECT count(*) FROM duckdb_columns() WHERE schema_name = ? AND table_name = "
                                  "'odometer_readings' AND column_name = 'high_water_km'", [MART_SCHEMA]).fetchall()[0][0])


def restart_assessment(build: MartBuild) -> MartScope:
    """odometer_restarts, or a full build for a table written before it kept its high-water marks."""
    return odometer_restarts(build) if has_high_water(build) else replace(build.scope, vehicles=None)


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
      window=("reading_time", "since"), widen_scope=restart_assessment,
      check=MartCheck(partial(odometer_readings_suite, TOLERANCE_KM), blocking=True, prepare=odometer_steps,
                      description="GX suite `odometer_readings`: odometer non-negative and not decreasing outside "
                                  "anomalies; one reading per vehicle and time."))
def odometer_readings(build: MartBuild) -> Built:
    """Every distinct odometer reading, assessed over each vehicle's whole series: its
    status (`valid`, `spike`, `rollback`, `implausible_speed`), the distance credited to it,
    the valid reading before it, whether a gap ends at it, and its sources (event, unit,
    delivery time, landing file and line). The one assessment every mileage mart uses."""
    # a build from each vehicle's first reading (a full build, a batch of one) resumes from nothing
    resume = resume_points(build) if not build.scope.full and build.scope.since else None
    assessed = assess_odometer(load_odometer(build.lake, build.scope), resume).readings.sort("vehicle_id",
                                                                                              "reading_time")
    return Built(assessed, {"spikes": int((assessed["status"] == "spike").sum())})


@mart(grain=("vehicle_id", "detected_at", "kind"), deps=[odometer_readings], kinds=("polars", "duckdb"), scoped=True,
      window=("detected_at", "since"), widen_scope=odometer_restarts)
def odometer_anomalies(build: MartBuild) -> Built:
    """One row per odometer anomaly (`ROLLBACK`, `SPIKE`, `IMPLAUSIBLE_SPEED`, `GAP`), at the
    reading that shows it, with the odometer before and after and what was seen."""
    frame = odometer_anomalies_frame(read_assessed(build.con, build.scope, ("reading_time", "since")))
    return Built(frame, {kind.lower(): int((frame["kind"] == kind).sum()) for kind in frame["kind"].unique()})


@mart(grain=("vehicle_id", "day"), deps=[odometer_readings], kinds=("polars", "duckdb"), scoped=True,
      window=("day", "since_day"), widen_scope=odometer_restarts,
      check=MartCheck(daily_mileage_suite, description="GX suite `daily_mileage`: one row per vehicle and day, "
                                                       "distance within what a car can drive in a day."))
def daily_mileage(build: MartBuild) -> pl.DataFrame:
    """Vehicle × UTC day: odometer at the first and last reading, distance driven (spikes
    excluded, rollbacks not counted), and the number of odometer readings."""
    return daily_mileage_frame(read_assessed(build.con, build.scope, ("day", "since_day")))


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
