import shutil
import stat
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest
from deltalake import DeltaTable

sys.path.insert(0, str(Path(__file__).parent))  # the delivery builders in tests/deliveries.py

from dagster._core.storage.defs_state.base import set_defs_state_storage  # noqa: E402
from pipelines.build import BuildReport, build_everything  # noqa: E402
from pipelines.definitions import build_definitions  # noqa: E402
from storage.resources import LakeResource, WarehouseResource  # noqa: E402


@pytest.fixture(autouse=True)
def no_dagster_instance_outlives_its_test():
    """Each test starts with no current Dagster instance. An instance a test made current
    and did not leave (Dagster keeps it in a context variable, by weak reference) would make
    later tests' definitions resolve a dead instance."""
    with set_defs_state_storage(None):
        yield


def pytest_collection_modifyitems(items):
    """Mark tests by the fixtures they use, so that the fast unit tests can be selected
    (`-m "not fleet and not pipeline"`, as mutation testing does)."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "default_fleet" in fixtures:
            item.add_marker(pytest.mark.fleet)
        if "data_dir" in fixtures:
            item.add_marker(pytest.mark.pipeline)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    (tmp_path / "landing").mkdir()
    return tmp_path


def definitions_on(data_dir: Path, **warehouse):
    return build_definitions({"lake": LakeResource(data_dir=str(data_dir)),
                              "warehouse": WarehouseResource(data_dir=str(data_dir), **warehouse)})


def build(data_dir: Path, **warehouse) -> BuildReport:
    """What `fleetlake run` does, on a temporary data dir (with the warehouse's settings
    given). A step that fails (other than by a check) is reported, not raised, by the build:
    here it fails the test."""
    report = build_everything(definitions_on(data_dir, **warehouse))
    assert not report.errors, report.errors
    return report


def mart(data_dir: Path, table: str, order: str | None = None) -> pl.DataFrame:
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        query = f"SELECT * FROM marts.{table}" + (f" ORDER BY {order}" if order else "")
        return con.sql(query).pl()


def lake_table(data_dir: Path, *parts: str) -> pl.DataFrame:
    """A lake table's current version, without the ingest group that wrote each row (which
    depends on how landing was split into runs)."""
    path = (data_dir / "lake").joinpath(*parts)
    if not DeltaTable.is_deltatable(str(path)):
        return pl.DataFrame()
    return pl.read_delta(str(path)).drop("ingest_seq", strict=False)


@pytest.fixture(scope="session")
def default_simulation(tmp_path_factory):
    """The default simulated fleet (SimulationConfig()) as the simulator wrote it, once per
    test session, not built: (its dir, with `landing/` and `ground_truth/`, and the
    simulator's summary). Tests must not modify it."""
    from pipelines.sources.simulator import SimulationConfig, simulate_fleet

    root = tmp_path_factory.mktemp("default_simulation")
    summary = simulate_fleet(SimulationConfig(), landing_dir=root / "landing", truth_dir=root / "ground_truth")
    return root, summary


@pytest.fixture(scope="session")
def default_fleet(tmp_path_factory, default_simulation) -> Path:
    """The default simulated fleet (SimulationConfig()), landed and built once per test
    session. Its ground truth is in `<data dir>/ground_truth/`. Tests must not modify it."""
    root = tmp_path_factory.mktemp("default_fleet")
    shutil.copytree(default_simulation[0], root, dirs_exist_ok=True)  # copy2: the landing files' mtimes kept
    report = build(root)
    assert report.ok, report.failed_checks
    return root


def truth(data_dir: Path, table: str) -> pl.DataFrame:
    return pl.read_parquet(data_dir / "ground_truth" / f"{table}.parquet")


def open_to_others(root: Path) -> list[str]:
    """Every path under `root` (itself included) that a group or other user may read, write or enter."""
    paths = [root, *root.rglob("*")]
    return sorted(f"{p.relative_to(root)} {stat.filemode(p.lstat().st_mode)}" for p in paths
                  if not p.is_symlink() and p.lstat().st_mode & 0o077)
