"""A `fleetlake run` killed with kill -9 leaves its Dagster run STARTED and holding its pool
slot; the next command marks it failed and frees the slot, so the next run does not wait."""

import os
import socket
import subprocess
import sys

import dagster as dg
from dagster._core.storage.dagster_run import DagsterRun

from pipelines.build import HOST_TAG, PID_TAG, end_runs_of_dead_processes


def test_runs_of_killed_processes_are_ended_and_their_slots_freed():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process id that no longer runs
    with dg.instance_for_test() as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots("warehouse", 1)
        runs = {}
        for name, pid in (("killed", gone.pid), ("running", os.getpid()), ("alive", os.getppid())):
            run = DagsterRun(job_name="marts_job", status=dg.DagsterRunStatus.STARTED,
                             tags={PID_TAG: str(pid), HOST_TAG: socket.gethostname()})
            instance.add_run(run)
            runs[name] = run.run_id
        storage.claim_concurrency_slot("warehouse", runs["killed"], "marts__vehicles")
        assert storage.get_concurrency_info("warehouse").active_slot_count == 1

        assert end_runs_of_dead_processes(instance) == [runs["killed"]]
        assert instance.get_run_by_id(runs["killed"]).status == dg.DagsterRunStatus.FAILURE
        assert storage.get_concurrency_info("warehouse").active_slot_count == 0
        # this process's own run and a live process's run are left alone
        assert instance.get_run_by_id(runs["running"]).status == dg.DagsterRunStatus.STARTED
        assert instance.get_run_by_id(runs["alive"]).status == dg.DagsterRunStatus.STARTED
