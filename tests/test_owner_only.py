"""What Fleetlake keeps is its owner's alone: the data directory and everything created in
it are closed to other local users (0700 directories, 0600 files), whichever process writes."""

import os
from pathlib import Path

import pytest
from conftest import build, open_to_others
from deliveries import delivery, odometer, write_landing

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
