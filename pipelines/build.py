"""A whole build, in-process, as `fleetlake run` does it: ingest, then the readings of every
day whose raw data changed, then the marts. A failed critical check stops the build where
it failed, across runs as Dagster's blocking checks do within one."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

import dagster as dg

from assets.readings import stale_days
from quality.gx_validation import gx_context
from storage.data_dir import dagster_home
from storage.errors import UserError
from storage.partitions import reading_days, record_reading_days
from storage.resources import LakeResource

# Dagster's run tags for a single run over a range of partitions.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


@dataclass
class BuildReport:
    stages: list[str] = field(default_factory=list)
    days_rebuilt: list[date] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    check_reasons: dict[str, str] = field(default_factory=dict)  # why each failed check failed
    errors: list[str] = field(default_factory=list)  # steps that failed for another reason
    warnings: list[str] = field(default_factory=list)
    metadata: dict[str, dict] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each job
    partitions_moved_to: date | None = None  # data arrived before the first partition: rebuild in a new process

    @property
    def ok(self) -> bool:
        return not self.failed_checks and not self.errors


def instance_for_cli(data_dir: str) -> dg.DagsterInstance:
    """The persistent Dagster instance the commands record their runs in, so that the UI
    shows them: $DAGSTER_HOME when set, else <data dir>/dagster (with its dagster.yaml)."""
    return dg.DagsterInstance.from_config(str(dagster_home(data_dir)))


# Tags on the commands' runs: which process ran them, to tell a run that is still going from
# one whose process was killed.
PID_TAG, HOST_TAG = "fleetlake/pid", "fleetlake/host"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def end_runs_of_dead_processes(instance: dg.DagsterInstance) -> list[str]:
    """Runs of this host's `fleetlake` processes that were killed (kill -9, a crash) stay
    STARTED and keep their concurrency slots, which would make the next run wait forever:
    mark them failed and free their slots (Dagster's daemon does this for its own runs).
    Returns their run ids."""
    ended = []
    unfinished = dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING,
                                         dg.DagsterRunStatus.NOT_STARTED], tags={HOST_TAG: socket.gethostname()})
    for run in instance.get_runs(filters=unfinished):
        pid = run.tags.get(PID_TAG, "")
        if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            instance.report_run_failed(run, f"the fleetlake process {pid} that ran it is gone")
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            ended.append(run.run_id)
    return ended


def _causes(error) -> list:
    """A Dagster error and the errors under it (Dagster wraps what user code raised)."""
    chain = []
    while error is not None:
        chain.append(error)
        error = error.cause
    return chain


def _step_failures(result, report: BuildReport) -> None:
    """Steps that failed other than by a blocking check (which `failed_checks` names): a
    user's mistake raised in any layer is raised again as itself; anything else becomes
    an error of the report."""
    for event in result.get_step_failure_events():
        chain = _causes(event.event_specific_data.error)
        names = [e.cls_name for e in chain]
        if "DagsterAssetCheckFailedError" in names:
            continue
        if "UserError" in names:  # its message reads "storage.errors.UserError: what to do"
            raise UserError(chain[names.index("UserError")].message.split(": ", 1)[-1].strip())
        report.errors.append(f"step {event.step_key} failed: {chain[-1].message.strip()}")


class Progress(Protocol):
    """Something that watches a build: told when each job starts (with its units of work,
    when known) and given each of its Dagster events as they happen."""

    def stage(self, job: str, total: int | None) -> None: ...

    def event(self, entry: dg.EventLogEntry) -> None: ...


def _run(defs: dg.Definitions, job: str, instance: dg.DagsterInstance, report: BuildReport,
         log_level: str, progress: Progress | None = None, total: int | None = None,
         tags: dict[str, str] | None = None, **kwargs) -> bool:
    job_def = defs.resolve_job_def(job)
    run_id = str(uuid.uuid4())  # known before the run starts, to listen to its events
    if progress is not None:
        progress.stage(job, total if total is not None else (len(job_def.nodes) if job == "marts_job" else None))
        instance.add_event_listener(run_id, progress.event)
    started = time.monotonic()
    # raise_on_error=False: a failed blocking check (or step) is reported with the counts
    # of what did run, not raised past the report.
    result = job_def.execute_in_process(
        instance=instance, raise_on_error=False, run_id=run_id,
        tags={**(tags or {}), PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()},
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}}, **kwargs)
    report.stages.append(job)
    report.seconds[job] = time.monotonic() - started
    _step_failures(result, report)
    for evaluation in result.get_asset_check_evaluations():
        name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
        if not evaluation.passed:
            why = f" — {evaluation.description}" if evaluation.description else ""
            if evaluation.blocking:
                report.failed_checks.append(name)
                report.check_reasons[name] = evaluation.description or ""
            else:
                report.warnings.append(f"check {name} did not pass{why}")
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        report.metadata[materialization.asset_key.to_user_string()] = {
            k: v.value for k, v in materialization.metadata.items() if not isinstance(v, dg.MarkdownMetadataValue)}
    if not result.success and report.ok:  # failed in a way no event above explains
        report.errors.append(f"{job} did not succeed")
    return report.ok


def build_everything(defs: dg.Definitions, instance: dg.DagsterInstance | None = None,
                     log_level: str = "WARNING", progress: Progress | None = None) -> BuildReport:
    instance = instance or dg.DagsterInstance.ephemeral()
    # GX's import (about 3 s, in Python) runs beside ingest (mostly in DuckDB, outside the
    # interpreter lock), so that the readings' checks do not wait for it.
    threading.Thread(target=gx_context, name="gx-import", daemon=True).start()
    if instance.is_persistent:
        end_runs_of_dead_processes(instance)
    lake: LakeResource = defs.resources["lake"].process_config_and_initialize()
    report = BuildReport()
    if not _run(defs, "ingest_job", instance, report, log_level, progress):
        return report
    known = reading_days.get_partition_keys()
    stale = stale_days(lake)
    first = record_reading_days(lake.root, stale)
    if first is not None and first.isoformat() < known[0]:
        # Data older than the partitions this process loaded (they start at the first day the
        # lake had): the next process's partitions include it (see cmd_run).
        report.partitions_moved_to = first
        return report
    days = [d for d in stale if d.isoformat() in set(known)]
    if outside := [d.isoformat() for d in stale if d not in days]:
        # Ingest files every signal under a partition; a day outside them (written by an older
        # version) cannot be built, and the lake accounting check fails on its signals.
        report.warnings.append(f"readings not built for {len(outside)} day(s) outside the partitions "
                               f"{known[0]}..{known[-1]} (UTC): {', '.join(outside[:10])}"
                               f"{' ...' if len(outside) > 10 else ''}; their signals have no outcome")
    if days:
        tags = {RANGE_START_TAG: days[0].isoformat(), RANGE_END_TAG: days[-1].isoformat()}
        report.days_rebuilt = days
        if not _run(defs, "readings_job", instance, report, log_level, progress, total=len(days), tags=tags):
            return report
    _run(defs, "marts_job", instance, report, log_level, progress)
    return report
