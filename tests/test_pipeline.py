"""The pipeline through Dagster, at the boundaries users touch: landing files in, lake and
marts out. Small hand-made deliveries, so every number is known."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from conftest import build, lake_table, mart
from deliveries import delivery, odometer, signal as sig, write_landing

DAY1, DAY2 = "2026-09-01", "2026-09-02"


def at(day: str, hour: int) -> str:
    return f"{day}T{hour:02d}:00:00.000Z"


def state(event_id, day, hour, km, vehicle="car-1", unit="km", delivered_hours_later=0):
    from datetime import datetime, timedelta
    delivered = datetime.fromisoformat(at(day, hour).replace("Z", "+00:00")) + timedelta(hours=delivered_hours_later)
    return delivery(event_id, vehicle, [odometer(km, at(day, hour), unit),
                                        sig("tractionbattery-stateofcharge", {"value": 50, "unit": "percent"},
                                            at(day, hour))],
                    delivered_at=int(delivered.timestamp() * 1000))


def test_landing_to_marts_with_every_kind_of_bad_input(data_dir):
    landing = data_dir / "landing"
    write_landing(landing / "2026/09/01/a.ndjson.gz", [
        state("e1", DAY1, 8, 1000), state("e2", DAY1, 9, 1020), state("e2", DAY1, 9, 1020),  # duplicate in file
        "{truncated", "",
        delivery("bad", "car-1", [odometer("lots", at(DAY1, 10)), odometer(5, at(DAY1, 10), "furlongs")],
                 delivered_at=1788253200000),
        delivery("err", "car-1", event_type="VEHICLE_ERROR",
                 errors=[{"type": "VEHICLE_STATE", "code": "ASLEEP", "state": "ERROR", "resolution": None}],
                 delivered_at=1788253200000),
    ])
    write_landing(landing / "2026/09/02/b.ndjson", [
        state("e3", DAY2, 8, 1050), state("e1", DAY1, 8, 1000),  # redelivered a day later, in another file
        state("m1", DAY2, 9, 100, vehicle="car-2", unit="miles"), state("m2", DAY2, 10, 110, vehicle="car-2", unit="mi"),
    ])
    report = build(data_dir)
    assert report.ok, report.failed_checks

    health = mart(data_dir, "pipeline_health", "day")
    totals = health.select(pl.exclude("day").sum()).row(0, named=True)
    assert totals["deliveries_landed"] == 11  # every line of both files
    assert (totals["deliveries_parsed"], totals["duplicates"], totals["quarantined"]) == (7, 2, 2)
    assert totals["signals"] == totals["signals_read"] + totals["signal_errors"] + totals["signals_quarantined"]
    assert totals["signals_quarantined"] == 2

    quarantined = lake_table(data_dir, "quarantine", "deliveries").sort("line_no")
    assert quarantined.select("raw_text", "reason").rows() == [("{truncated", "invalid_json"), ("", "empty_line")]
    held = lake_table(data_dir, "quarantine", "readings").sort("reason")
    assert held["reason"].to_list() == ["unknown_unit", "wrong_type"]

    daily = mart(data_dir, "daily_mileage", "vehicle_id, day")
    assert daily.select("vehicle_id", "day", "distance_km", "readings").rows() == [
        ("car-1", pl.Series([DAY1]).str.to_date()[0], 20.0, 2),
        ("car-1", pl.Series([DAY2]).str.to_date()[0], 30.0, 1),
        ("car-2", pl.Series([DAY2]).str.to_date()[0], pytest.approx(16.093, abs=1e-3), 2),
    ]
    vehicles = mart(data_dir, "vehicles", "vehicle_id")
    assert vehicles.select("vehicle_id", "make", "powertrain").rows() == [("car-1", "TESLA", "BEV"),
                                                                            ("car-2", "TESLA", "BEV")]
    errors = mart(data_dir, "vehicle_errors")
    assert errors.select("vehicle_id", "code", "state").rows() == [("car-1", "ASLEEP", "ERROR")]
    results = mart(data_dir, "quality_results")
    assert set(results["check"]) >= {"landed_lines_accounted", "readings_schema", "readings_in_range",
                                      "signals_accounted", "daily_mileage_suite"}
    assert results.filter(pl.col("check") != "landing_freshness")["passed"].all()


def test_rerun_changes_nothing_and_adds_no_duplicates(data_dir):
    write_landing(data_dir / "landing/a.ndjson", [state(f"e{h}", DAY1, h, 1000 + h) for h in range(6, 12)])
    build(data_dir)
    first = {t: mart(data_dir, t) for t in ("vehicles", "daily_mileage", "pipeline_health")}
    readings_before = lake_table(data_dir, "readings")
    report = build(data_dir)
    assert report.days_rebuilt == []  # nothing new: no day is rebuilt
    for table, frame in first.items():
        assert mart(data_dir, table).equals(frame), table
    readings_after = lake_table(data_dir, "readings")
    assert readings_after.equals(readings_before)
    assert readings_after.select("event_id", "signal_index", "metric").is_duplicated().sum() == 0


def test_late_data_updates_its_old_day(data_dir):
    write_landing(data_dir / "landing/1.ndjson", [state("a", DAY1, 8, 1000), state("b", DAY1, 12, 1040)])
    build(data_dir)
    assert mart(data_dir, "daily_mileage")["distance_km"].to_list() == [40.0]
    # Three days later, a reading of day 1 arrives, and a new day's data with it.
    write_landing(data_dir / "landing/2.ndjson", [state("late", DAY1, 18, 1070, delivered_hours_later=72),
                                                  state("c", "2026-09-04", 9, 1100)])
    report = build(data_dir)
    assert [d.isoformat() for d in report.days_rebuilt] == [DAY1, "2026-09-04"]
    daily = mart(data_dir, "daily_mileage", "day")
    assert daily.select("distance_km", "readings", "odometer_end_km").rows() == [(70.0, 3, 1070.0), (30.0, 1, 1100.0)]


def test_a_changed_landing_file_counts_its_new_lines_only(data_dir):
    path = write_landing(data_dir / "landing/a.ndjson", [state("a", DAY1, 8, 1000)])
    build(data_dir)
    with path.open("a") as f:  # the sender appends to the same file
        f.write(json.dumps(state("b", DAY1, 9, 1010)) + "\n")
    build(data_dir)
    health = mart(data_dir, "pipeline_health").select(pl.exclude("day").sum()).row(0, named=True)
    assert (health["deliveries_parsed"], health["duplicates"]) == (2, 1)
    assert mart(data_dir, "daily_mileage")["distance_km"].to_list() == [10.0]


def test_empty_landing_builds_empty_marts(data_dir):
    report = build(data_dir)
    assert report.ok
    assert mart(data_dir, "vehicles").height == 0
    assert mart(data_dir, "daily_mileage").height == 0


def _fleet_landing(landing: Path, files: int = 40, per_file: int = 60) -> None:
    for f in range(files):
        day = f"2026-09-{1 + f % 20:02d}"
        write_landing(landing / f"f{f:03d}.ndjson.gz", [
            state(f"e{f}-{i}", day, 6 + i % 12, 1000 + f * 100 + i, vehicle=f"car-{i % 7}") for i in range(per_file)])


def _fleetlake(data_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "FLEETLAKE_DATA_DIR": str(data_dir)}
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run"], env=env, cwd=Path(__file__).parents[1],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    """The kill tests' fleet built by one run that nobody killed: what a killed run and the
    run after it must give. Built once for the module; the tests only read it."""
    clean = tmp_path_factory.mktemp("clean")
    _fleet_landing(clean / "landing")
    assert build(clean).ok
    return clean


@pytest.mark.pipeline  # the module's `clean` fixture builds through Dagster
@pytest.mark.parametrize("kill_after", ["raw/deliveries", "readings"])
def test_a_run_killed_part_way_completes_on_the_next_run(tmp_path, clean, kill_after):
    """Killed once the first commit of a table is in: mid-ingest (the group's raw rows are
    in, its batches are not) or mid-readings (some days replaced, their state not yet)."""
    killed = tmp_path / "killed"
    shutil.copytree(clean / "landing", killed / "landing")

    process = _fleetlake(killed)
    log = killed / "lake" / kill_after / "_delta_log"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(log.glob("*.json")):
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert list(log.glob("*.json")) and not (killed / "warehouse.duckdb").exists(), \
        "the kill should land part-way through the run"

    assert build(killed).ok
    for table in ("vehicles", "daily_mileage", "pipeline_health", "vehicle_errors"):
        assert mart(killed, table).equals(mart(clean, table)), table
    assert lake_table(killed, "readings").sort("event_id", "metric").drop("batch_id").equals(
        lake_table(clean, "readings").sort("event_id", "metric").drop("batch_id"))

