"""A day of readings is a unit of work that can run on its own, in parallel with other days:
the readings of several partitions run as concurrent Dagster runs, each step in its own
process (the multiprocess executor), writing the same Delta tables, give the same lake as
one in-process run over all of them."""

import shutil
from concurrent.futures import ThreadPoolExecutor

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
    _fleet_landing(serial / "landing", files=12, per_file=20)
    shutil.copytree(serial / "landing", parallel / "landing")
    for root in (serial, parallel):
        ingest_landing(LakeResource(data_dir=str(root)))
    days = stale_days(LakeResource(data_dir=str(serial)))
    assert len(days) >= 4

    monkeypatch.setenv("FLEETLAKE_DATA_DIR", str(serial))
    result = readings_job().execute_in_process(
        tags={RANGE_START_TAG: days[0].isoformat(), RANGE_END_TAG: days[-1].isoformat()})
    assert result.success

    monkeypatch.setenv("FLEETLAKE_DATA_DIR", str(parallel))
    with dg.instance_for_test() as instance:
        def run(day) -> bool:
            with dg.execute_job(dg.reconstructable(readings_job), instance=instance,
                                tags={"dagster/partition": day.isoformat()}) as executed:
                return executed.success

        with ThreadPoolExecutor(max_workers=4) as pool:
            assert all(pool.map(run, days))
        runs = instance.get_runs()
        assert len(runs) == len(days)
        for one in runs:  # each step ran in a worker process of its own
            events = [e.dagster_event.event_type_value for e in instance.all_logs(one.run_id) if e.dagster_event]
            assert "STEP_WORKER_STARTED" in events
    assert stale_days(LakeResource(data_dir=str(parallel))) == []
    serial_lake, parallel_lake = _lake(serial), _lake(parallel)
    for kind in serial_lake:
        assert serial_lake[kind].height > 0 or kind == "signal_errors", kind
        assert serial_lake[kind].equals(parallel_lake[kind]), kind
