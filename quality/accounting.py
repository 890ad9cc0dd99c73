"""The row accounting of the design: nothing is lost silently.

Files: a landing file that cannot be read or decompressed is quarantined as a file (one
record); the complete lines it keeps (a cut gzip) are its batch's lines like any others.
Lines: every landed line is a parsed delivery, a duplicate, or a quarantined record.
Signals: every signal of a parsed delivery is a reading, a signal error, or quarantined,
per day and over the whole lake.
Both are checked against what is actually on disk, not against the counts the writer meant.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from storage.layout import RawLayout, ReadingsLayout
from storage.resources import LakeResource


def _rows(files: list[Path]) -> int:
    return sum(pl.scan_parquet(f).select(pl.len()).collect().item() for f in files)


def batch_accounting(layout: RawLayout, manifest: dict) -> dict:
    """Compare one committed batch's landed lines with the rows stored for it."""
    batch_id = manifest["batch_id"]
    stored = {
        "parsed": _rows([layout.table_file("deliveries", batch_id)]),
        "duplicates": _rows([layout.table_file("duplicates", batch_id)]),
        "quarantined": _rows([layout.quarantine_file(batch_id)]),
        "files_quarantined": _rows([layout.file_quarantine_file(batch_id)]) if manifest.get("file_reason") else 0,
        "signals": _rows([layout.signals_file(date.fromisoformat(d), batch_id)
                          for d in manifest["days"]]),
    }
    balanced = manifest["landing_lines"] == stored["parsed"] + stored["duplicates"] + stored["quarantined"]
    file_recorded = stored["files_quarantined"] == (1 if manifest.get("file_reason") else 0)
    return {"success": balanced and file_recorded and stored["signals"] == manifest["signals"],
            "batch_id": batch_id, "source_file": manifest["source_file"],
            "landing_lines": manifest["landing_lines"], **stored, "signals_expected": manifest["signals"]}


def signal_accounting(raw_signals: int, readings: pl.DataFrame, signal_errors: int, quarantined: int) -> dict:
    """Compare a day's raw signals with the signals that became readings, errors or quarantine."""
    read = readings.select(pl.struct("event_id", "signal_index").n_unique()).item() if readings.height else 0
    return {"success": raw_signals == read + signal_errors + quarantined, "raw_signals": raw_signals,
            "signals_read": read, "signal_errors": signal_errors, "signals_quarantined": quarantined}


def lake_signal_accounting(lake: LakeResource) -> dict:
    """Every raw signal the lake holds, over all days, not only the days a run built: each
    day with committed raw signals must have been built from exactly those signals, and
    balance. A day that was not (never built, or built from other batches) holds signals
    without an outcome, and fails this."""
    raw, built = RawLayout(lake), ReadingsLayout(lake)
    totals = {"raw_signals": 0, "signals_read": 0, "signal_errors": 0, "signals_quarantined": 0}
    without_outcome: list[str] = []
    days = raw.signal_days()
    for day in days:
        files = raw.committed_signal_files(day)
        raw_signals = _rows(files)
        state = built.state(day)
        totals["raw_signals"] += raw_signals
        if (state is None or state["sources"] != [p.stem for p in files] or state["raw_signals"] != raw_signals
                or not state["success"]):
            without_outcome.append(day.isoformat())
            continue
        for key in ("signals_read", "signal_errors", "signals_quarantined"):
            totals[key] += state[key]
    outcomes = totals["signals_read"] + totals["signal_errors"] + totals["signals_quarantined"]
    return {"success": not without_outcome and totals["raw_signals"] == outcomes, **totals,
            "days_checked": len(days), "days_without_outcome": without_outcome[:50],
            "days_without_outcome_count": len(without_outcome)}
