"""A day of readings is a unit of work that can run on its own, in parallel with other days:
the readings of several partitions run as concurrent Dagster runs (one process each, every
step in a worker process of its own: the multiprocess executor), writing the same Delta
tables, give the same lake as one in-process run over all of them."""

import subprocess
import sys
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
from conftest import lake_table
from test_pipeline import _fleet_landing

from assets.raw import ingest_landing
from assets.readings import stale_days
from pipelines.build import RANGE_END_TAG, RANGE_START_TAG
from storage.resources import LakeResource


def readings_job():
    """The readings job on the multiprocess executor, as a child process rebuilds it: its
    lake from FLEETLAKE_DATA_DIR."""
    from pipelines import jobs
    from pipelines.definitions import all_assets, default_resources

    job = dg.define_asset_job(jobs.readings_job.name, selection=jobs.readings_job.selection,
                              executor_def=dg.multiprocess_executor)
    return dg.Definitions(assets=all_assets(), jobs=[job], resources=default_resources()).resolve_job_def(job.name)


def _lake(root) -> dict[str, pl.DataFrame]:
    return {kind: lake_table(root, *kind.split("/")).sort(pl.all())
            for kind in ("readings", "signal_errors", "quarantine/readings", "_state/readings")}


def test_days_built_in_parallel_processes_give_the_same_lake_as_one_in_process_run(tmp_path, monkeypatch):
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    _fleet_landing(serial / "landing", files=4, per_file=30)  # four days
    shutil.copytree(serial / "landing", parallel / "landing")
    for root in (serial, parallel):
        ingest_landing(LakeResource(data_dir=str(root)))
    days = stale_days(LakeResource(data_dir=str(serial)))
    assert len(days) == 4

    monkeypatch.setenv("FLEETLAKE_DATA_DIR", str(serial))
    result = readings_job().execute_in_process(
        tags={RANGE_START_TAG: days[0].isoformat(), RANGE_END_TAG: days[-1].isoformat()})
    assert result.success

    monkeypatch.setenv("FLEETLAKE_DATA_DIR", str(parallel))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    with dg.DagsterInstance.get():  # its storage created once, before the runs race to migrate it
        pass
    runs = [subprocess.Popen([sys.executable, __file__, day.isoformat()], cwd=Path(__file__).parent)
            for day in days]
    assert [r.wait(timeout=600) for r in runs] == [0] * len(days)
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert len(runs) == len(days)
        for one in runs:  # the step ran in a worker process of its own
            events = [e.dagster_event.event_type_value for e in instance.all_logs(one.run_id) if e.dagster_event]
            assert "STEP_WORKER_STARTED" in events
    assert stale_days(LakeResource(data_dir=str(parallel))) == []
    serial_lake, parallel_lake = _lake(serial), _lake(parallel)
    for kind in serial_lake:
        assert serial_lake[kind].height > 0 or kind != "readings", kind
        assert serial_lake[kind].equals(parallel_lake[kind]), kind


if __name__ == "__main__":  # one partition's run, in a process of its own
    with dg.DagsterInstance.get() as instance, dg.execute_job(
            dg.reconstructable(readings_job), instance=instance, tags={"dagster/partition": sys.argv[1]}) as executed:
        sys.exit(0 if executed.success else 1)
