"""The row accounting of the design: nothing is lost silently.

Lines: every landed line is a parsed delivery, a duplicate, or a quarantined record.
Signals: every signal of a parsed delivery is a reading, a signal error, or quarantined.
Both are checked against what is actually on disk, not against the counts the writer meant.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from storage.layout import RawLayout


def _rows(files: list[Path]) -> int:
    return sum(pl.scan_parquet(f).select(pl.len()).collect().item() for f in files)


def batch_accounting(layout: RawLayout, manifest: dict) -> dict:
    """Compare one committed batch's landed lines with the rows stored for it."""
    batch_id = manifest["batch_id"]
    stored = {
        "parsed": _rows([layout.table_file("deliveries", batch_id)]),
        "duplicates": _rows([layout.table_file("duplicates", batch_id)]),
        "quarantined": _rows([layout.quarantine_file(batch_id)]),
        "signals": _rows([layout.signals_file(date.fromisoformat(d), batch_id)
                          for d in manifest["days"]]),
    }
    balanced = manifest["landing_lines"] == stored["parsed"] + stored["duplicates"] + stored["quarantined"]
    return {"success": balanced and stored["signals"] == manifest["signals"],
            "batch_id": batch_id, "source_file": manifest["source_file"],
            "landing_lines": manifest["landing_lines"], **stored, "signals_expected": manifest["signals"]}


def signal_accounting(raw_signals: int, readings: pl.DataFrame, signal_errors: int, quarantined: int) -> dict:
    """Compare a day's raw signals with the signals that became readings, errors or quarantine."""
    read = readings.select(pl.struct("event_id", "signal_index").n_unique()).item() if readings.height else 0
    return {"success": raw_signals == read + signal_errors + quarantined, "raw_signals": raw_signals,
            "signals_read": read, "signal_errors": signal_errors, "signals_quarantined": quarantined}
