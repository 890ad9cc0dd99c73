"""What `fleetlake run` shows on a terminal while it works: each stage (ingest, readings, each
mart, the checks) with its counts, elapsed time and, for the long ones, progress. It watches
Dagster's event stream (an event listener on the instance), so the assets print nothing."""

from __future__ import annotations

import re

import dagster as dg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

# Log lines the assets write per unit of work (assets/raw.py per landing file, assets/readings.py
# per day): counted for progress; if their wording changes, the stage only loses its count.
INGESTED_FILE = re.compile(r"^ingested ")
BUILT_DAY = re.compile(r"^readings \d{4}-\d{2}-\d{2}:")

STAGES = {"ingest_job": "ingest", "readings_job": "readings", "marts_job": "marts"}


def _count(value) -> str:
    return f"{value:,}" if isinstance(value, int | float) else str(value)


class TerminalProgress:
    """A rich progress display fed by Dagster events; `stage` starts a job's display."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.display = Progress(SpinnerColumn(), TextColumn("{task.description:<10}"), BarColumn(bar_width=24),
                                MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[detail]}"),
                                console=self.console)
        self.task: TaskID | None = None
        self.checks: TaskID | None = None
        self.job = ""
        self.done = 0
        self.total: int | None = None
        self.check_counts = {"passed": 0, "warning": 0, "failed": 0}

    def __enter__(self) -> TerminalProgress:
        self.display.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.checks is not None:
            checked = sum(self.check_counts.values())
            self.display.update(self.checks, total=checked, completed=checked)
        self.display.stop()

    def stage(self, job: str, total: int | None) -> None:
        """A job begins: `total` units of work (files, days, steps), None when not known."""
        if self.task is not None:
            self.display.stop_task(self.task)
        self.job, self.done = job, 0
        self.task = self.display.add_task(STAGES.get(job, job), total=total, detail="")
        self.total = total
        if self.checks is not None:  # keep the checks' line last
            self.display.remove_task(self.checks)
            self.checks = None
            self._show_checks()

    def event(self, entry: dg.EventLogEntry) -> None:
        event = entry.dagster_event
        if event is None:
            self._message(entry.user_message)
        elif event.event_type == dg.DagsterEventType.STEP_START and self.job == "marts_job":
            self.display.update(self.task, detail=event.step_key)
        elif event.event_type == dg.DagsterEventType.STEP_SUCCESS and self.job == "marts_job":
            self.display.advance(self.task)
        elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            self._materialized(event.event_specific_data.materialization)
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            self._checked(event.event_specific_data)
        elif event.event_type in (dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE):
            if self.total is None:
                self.display.update(self.task, total=self.done, completed=self.done)
            elif event.event_type == dg.DagsterEventType.RUN_SUCCESS:
                self.display.update(self.task, completed=self.total)  # unchanged days are skipped silently
            self.display.stop_task(self.task)

    def _message(self, text: str) -> None:
        if self.job == "ingest_job" and INGESTED_FILE.match(text):
            self.done += 1
            self.display.update(self.task, completed=self.done, detail=f"{self.done:,} files ingested")
        elif self.job == "readings_job" and BUILT_DAY.match(text):
            self.done += 1
            self.display.update(self.task, completed=self.done, detail=f"day {text.split()[1].rstrip(':')}")

    def _materialized(self, materialization: dg.AssetMaterialization) -> None:
        key = materialization.asset_key.to_user_string()
        meta = {k: v.value for k, v in materialization.metadata.items()}
        if key == "raw_deliveries":
            self.display.update(self.task, detail=(
                f"{_count(meta.get('new_files', 0))} files, {_count(meta.get('new_landing_lines', 0))} lines → "
                f"{_count(meta.get('new_parsed', 0))} parsed, {_count(meta.get('new_duplicates', 0))} duplicates, "
                f"{_count(meta.get('new_quarantined', 0))} quarantined"))
        elif key == "readings":
            self.display.update(self.task, detail=f"{_count(meta.get('dagster/row_count', 0))} readings")
        elif key.startswith("marts/"):
            rows = meta.get("dagster/row_count")
            self.console.print(f"  [green]✓[/] {meta.get('table', key)}: {_count(rows)} rows")

    def _show_checks(self) -> None:
        detail = ", ".join(f"{n} {k}" for k, n in self.check_counts.items() if n)
        if self.checks is None:
            self.checks = self.display.add_task("checks", total=None, detail="")
        self.display.update(self.checks, completed=sum(self.check_counts.values()), detail=detail)

    def _checked(self, evaluation) -> None:
        outcome = "passed" if evaluation.passed else "failed" if evaluation.blocking else "warning"
        self.check_counts[outcome] += 1
        self._show_checks()
        if not evaluation.passed:
            name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
            colour = "red" if evaluation.blocking else "yellow"
            self.console.print(f"  [{colour}]{outcome}[/] {name}", highlight=False)
