"""Precise coordinates older than the retention are coarsened in the lake to the marts' coarse
area (assets/location_coarsening.py): every table that keeps them, by reading time, once."""

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pyarrow.parquet as pq
import pytest
from conftest import build, definitions_on, lake_table
from deliveries import delivery, odometer, signal, write_landing
from deltalake import DeltaTable

from assets.location_coarsening import coarse_coordinate, coarsen_lake, coarsen_text, retention_cutoff
from assets.location_coarsening import LocationRetentionConfig
from assets.marts.charging.places import session_places
from storage.resources import LakeResource

OLD_LAT, OLD_LON = 37.774929, -122.419416   # read on 2026-09-01, older than the retention
NEW_LAT, NEW_LON = 37.801234, -122.271234   # read on 2026-10-20, within it
NOW = datetime(2026, 10, 21, tzinfo=UTC)
CUTOFF = datetime(2026, 9, 21, tzinfo=UTC)  # NOW less the default 30 days


def location(lat, lon, at):
    return signal("location-preciselocation", {"latitude": lat, "longitude": lon, "heading": 90,
                                               "locationType": "GPS"}, at)


def test_a_coordinate_becomes_the_centre_of_the_marts_area_cell():
    assert (coarse_coordinate(OLD_LAT), coarse_coordinate(OLD_LON)) == (37.75, -122.45)
    assert coarse_coordinate(37.7) == 37.75 and coarse_coordinate(-0.01) == -0.05
    for value in (OLD_LAT, OLD_LON, 37.7, 52.3999, -122.4, 0.0, 11.57):
        assert coarse_coordinate(coarse_coordinate(value)) == coarse_coordinate(value)  # running again changes nothing


def test_the_marts_see_the_same_area_in_a_coarsened_reading():
    """The marts' `area` of a coarsened position is the area of the precise one."""
    def area(lat, lon):
        t = datetime(2026, 9, 1, 8, tzinfo=UTC)
        distinct = pl.DataFrame({"vehicle_id": ["v", "v"], "metric": ["latitude_deg", "longitude_deg"],
                                 "component": [None, None], "reading_time": [t, t], "value": [lat, lon]})
        sessions = pl.DataFrame({"vehicle_id": ["v"], "plug_id": [1], "plugged_in_at": [t], "unplugged_at": [t]})
        return session_places(distinct, sessions).get_column("area").item()

    for lat, lon in ((OLD_LAT, OLD_LON), (52.3651, 4.8999), (48.1, 11.57)):
        assert area(coarse_coordinate(lat), coarse_coordinate(lon)) == area(lat, lon)


def test_text_keeps_everything_but_the_coordinates():
    body = json.dumps({"latitude": OLD_LAT, "longitude": OLD_LON, "heading": 90.123456})
    assert json.loads(coarsen_text(body)) == {"latitude": 37.75, "longitude": -122.45, "heading": 90.123456}
    # a cut line (not JSON), a number in a string, an exponent, spacing as received
    assert coarsen_text('{"x": [{"latitude" : "37.774929", "longitude":-1.22419416e2') == \
        '{"x": [{"latitude" : "37.75", "longitude":-122.45'
    assert coarsen_text('{"latitude": null, "name": "latitude 37.774929"}') == \
        '{"latitude": null, "name": "latitude 37.774929"}'
    assert coarsen_text(coarsen_text(body)) == coarsen_text(body)


def test_the_clock_and_the_retention_set_the_cutoff():
    assert retention_cutoff(LocationRetentionConfig(), now=NOW) == CUTOFF
    assert retention_cutoff(LocationRetentionConfig(retention_days=7, as_of="2026-10-21T00:00:00")) == \
        datetime(2026, 10, 14, tzinfo=UTC)


@pytest.fixture(scope="module")
def built_located_lake(tmp_path_factory):
    """A lake with an old and a recent position, in every table that keeps coordinates."""
    data_dir = tmp_path_factory.mktemp("located")
    old_day, new_day = "2026-09-01T08:00:00.000Z", "2026-10-20T08:00:00.000Z"
    write_landing(data_dir / "landing/old.ndjson", [
        delivery("e-old", signals=[odometer(10, old_day), location(OLD_LAT, OLD_LON, old_day)],
                 delivered_at=1788264000000),
        # out of range: the signal is quarantined, with its body
        delivery("e-bad", signals=[location(95.5, OLD_LON, old_day)], delivered_at=1788264000000),
        # a line cut short: quarantined as it was received
        '{"eventId": "e-cut", "data": {"signals": [{"body": {"latitude": 37.774929, "longitude": -122.419416',
    ])
    write_landing(data_dir / "landing/new.ndjson", [
        delivery("e-new", signals=[odometer(40, new_day), location(NEW_LAT, NEW_LON, new_day)],
                 delivered_at=1792497600000),
    ])
    build(data_dir)
    return data_dir


@pytest.fixture
def located_lake(built_located_lake, tmp_path):
    """A copy of the built lake of its own for a test to coarsen."""
    return Path(shutil.copytree(built_located_lake, tmp_path / "data"))


TEXT_TABLES = {("raw", "signals"): "body", ("quarantine", "readings"): "body", ("raw", "deliveries"): "payload",
               ("quarantine", "deliveries"): "raw_text"}


def _holds(data_dir, lat, lon) -> set[str]:
    """The tables whose current version still holds this precise position."""
    found = set()
    for parts, column in TEXT_TABLES.items():
        texts = lake_table(data_dir, *parts).get_column(column).drop_nulls()
        if texts.str.contains(str(lat)).any() or texts.str.contains(str(lon)).any():
            found.add("/".join(parts))
    values = lake_table(data_dir, "readings").get_column("value")
    if values.is_in([lat, lon]).any():
        found.add("readings")
    return found


def _writes_since(data_dir, versions: dict[str, int]) -> dict[str, list[str]]:
    """The commits that changed each table's data since `versions` (a vacuum and the log's
    retention setting commit too, but change no data)."""
    return {path: [c["operation"] for c in DeltaTable(str(data_dir / "lake" / path)).history()
                   if c["version"] > version and c["operation"] not in ("VACUUM START", "VACUUM END", "SET TBLPROPERTIES")]
            for path, version in versions.items()}


def _lake_files_holding(data_dir, *values: float) -> list[str]:
    """Every data file, log checkpoint and log entry of the lake that holds one of `values`."""
    found = []
    for parquet in (data_dir / "lake").rglob("*.parquet"):  # data files and log checkpoints
        text = str(pq.read_table(parquet).to_pylist())
        found += [str(parquet)] if any(str(v) in text for v in values) else []
    for log in (data_dir / "lake").rglob("_delta_log/*.json"):
        found += [str(log)] if any(str(v) in log.read_text() for v in values) else []
    return found


def test_old_coordinates_are_coarsened_in_every_table_once(located_lake):
    everywhere = {"readings", *("/".join(p) for p in TEXT_TABLES)}
    assert _holds(located_lake, OLD_LAT, OLD_LON) == everywhere
    lake = LakeResource(data_dir=str(located_lake), retention_hours=1)
    versions = {p: DeltaTable(str(located_lake / "lake" / p)).version()
                for p in ("readings", "raw/signals", "quarantine/readings", "raw/deliveries", "quarantine/deliveries")}

    changed = coarsen_lake(lake, CUTOFF)

    assert changed == {"readings": 2, "raw/signals": 2, "quarantine/readings": 1, "raw/deliveries": 2,
                       "quarantine/deliveries": 1}
    assert _holds(located_lake, OLD_LAT, OLD_LON) == set()
    assert _holds(located_lake, NEW_LAT, NEW_LON) == {"readings", "raw/signals", "raw/deliveries"}  # within retention
    assert _writes_since(located_lake, versions) == {"readings": ["UPDATE"], "raw/signals": ["MERGE"],
                                                     "quarantine/readings": ["MERGE"], "raw/deliveries": ["MERGE"],
                                                     "quarantine/deliveries": ["MERGE"]}  # one commit per table
    readings = lake_table(located_lake, "readings")
    old = readings.filter(pl.col("reading_time") < CUTOFF)
    assert sorted(old.filter(pl.col("metric").is_in(["latitude_deg", "longitude_deg"]))["value"]) == [-122.45, 37.75]
    assert old.filter(pl.col("metric") == "odometer_km")["value"].to_list() == [10.0]  # nothing else changes
    delivered = json.loads(lake_table(located_lake, "raw", "deliveries")
                           .filter(pl.col("event_id") == "e-old")["payload"].item())
    assert delivered["data"]["signals"][1]["body"] == {"latitude": 37.75, "longitude": -122.45, "heading": 90,
                                                       "locationType": "GPS"}

    assert coarsen_lake(lake, CUTOFF) == dict.fromkeys(changed, 0)  # idempotent: nothing left, no commit
    assert all(len(ops) == 1 for ops in _writes_since(located_lake, versions).values())

    # Within the retention, the replaced files (and the log entries that describe them, with
    # their statistics) are kept for readers still on the old version; past it, nothing is.
    assert _lake_files_holding(located_lake, OLD_LAT, OLD_LON)
    coarsen_lake(LakeResource(data_dir=str(located_lake), retention_hours=0), CUTOFF)
    assert _lake_files_holding(located_lake, OLD_LAT, OLD_LON) == []
    assert _holds(located_lake, NEW_LAT, NEW_LON) == {"readings", "raw/signals", "raw/deliveries"}


def test_the_asset_coarsens_as_of_its_clock(located_lake):
    """Launched as Dagster launches the schedule's job, with the clock set by config."""
    defs = definitions_on(located_lake)
    job = defs.resolve_job_def("coarsen_locations_job")
    run = {"ops": {"coarsened_locations": {"config": {"as_of": "2026-10-21T00:00:00+00:00", "retention_days": 10}}}}
    assert job.execute_in_process(run_config=run, instance=dg.DagsterInstance.ephemeral()).success
    assert _holds(located_lake, OLD_LAT, OLD_LON) == set()
    assert _holds(located_lake, NEW_LAT, NEW_LON) == {"readings", "raw/signals", "raw/deliveries"}
    schedule = defs.resolve_schedule_def("coarsen_old_locations_daily")
    assert schedule.job_name == "coarsen_locations_job"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
