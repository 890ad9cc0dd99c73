"""What Fleetlake keeps is its owner's alone: the data directory and everything created in
it are closed to other local users (0700 directories, 0600 files), whichever process writes."""

import os
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from conftest import build, open_to_others
from deliveries import delivery, odometer, write_landing

from storage.resources import LakeResource

pytestmark = pytest.mark.pipeline


@pytest.fixture
def process_umask():
    """The build sets this process's umask; give the next tests back the one they had."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield
    os.umask(previous)


def test_a_build_leaves_nothing_open_to_other_users(tmp_path, process_umask):
    data_dir = tmp_path / "data"
    (data_dir / "landing").mkdir(parents=True)
    os.chmod(data_dir, 0o755)  # as `mkdir` under a common umask leaves it
    write_landing(data_dir / "landing/a.ndjson", [
        delivery("e1", signals=[odometer(10, "2026-09-01T08:00:00Z")], delivered_at=1788249600000),
        delivery("e2", signals=[odometer(25, "2026-09-01T09:00:00Z")], delivered_at=1788253200000)])
    for source_made in (data_dir / "landing", data_dir / "landing/a.ndjson"):
        os.chmod(source_made, 0o700)  # landing is the source's to protect; everything else is ours
    os.umask(0o022)

    build(data_dir)

    assert (data_dir / "warehouse.duckdb").exists() and any((data_dir / "lake").rglob("*.parquet"))
    assert open_to_others(data_dir) == []


def test_the_commands_leave_nothing_open_to_other_users(tmp_path, process_umask, monkeypatch):
    """Through the commands, as a user runs them from a shell whose umask lets others read:
    the simulator's landing files and ground truth, the lake's Delta tables (logs and
    checkpoints), the warehouse, the Dagster instance kept in the data directory (its
    settings, run and event storage), mileage statements, and the lake after coarsening."""
    from pipelines.cli import main

    data_dir = tmp_path / "data"
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    os.umask(0o022)
    assert main(["init", str(data_dir)]) == 0
    assert main(["--data-dir", str(data_dir), "simulate", "--vehicles", "1", "--days", "2"]) == 0
    assert main(["--data-dir", str(data_dir), "run"]) == 0
    vehicle = next(iter(pl.read_parquet(data_dir / "ground_truth" / "vehicles.parquet")["vehicle_id"]))
    assert main(["--data-dir", str(data_dir), "mileage", vehicle, "--from", "2026-09-01", "--to", "2026-09-02"]) == 0
    from assets.location_coarsening import coarsen_lake
    coarsen_lake(LakeResource(data_dir=str(data_dir), retention_hours=0), datetime(2026, 9, 3, tzinfo=UTC))

    made = {p.relative_to(data_dir).parts[0] for p in data_dir.rglob("*") if p.is_file()}
    assert {"landing", "ground_truth", "lake", "warehouse.duckdb", "dagster", "statements"} <= made
    assert any((data_dir / "dagster").rglob("*.db")) and any((data_dir / "lake").rglob("*.checkpoint.parquet"))
    assert open_to_others(data_dir) == []
