"""The row accounting of the design: nothing is lost silently.

Files: a landing file that cannot be read or decompressed is quarantined as a file (one
record); the complete lines it keeps (a cut gzip) are its batch's lines like any others.
Lines: every landed line is a parsed delivery, a duplicate, a quarantined record, or a line
of an erased vehicle (dropped at ingest or removed by the erasure; only counted).
Signals: every signal of a parsed delivery is a reading, a signal error, or quarantined,
per day and over the whole lake.
Both are checked against what is actually on disk, not against the counts the writer meant.
"""

from __future__ import annotations

import polars as pl

from storage import tables
from storage.layout import RawLayout, ReadingsLayout
from storage.resources import LakeResource

# What each raw table holds per batch, as the batch's manifest counts it.
_STORED_AS = {"deliveries": "parsed", "duplicates": "duplicates", "quarantine": "quarantined",
              "quarantined_files": "files_quarantined", "signals": "signals", "erased": "erased"}


def _rows_per_batch(layout: RawLayout, table: str, seqs: list[int]) -> dict[str, int]:
    """Rows per batch of the given ingest groups (their files found by statistics)."""
    path = layout.table_dir(table)
    if not tables.exists(path):
        return {}
    rows = pl.col("lines").sum() if table == "erased" else pl.len()  # erased lines are only counted
    counted = (tables.scan(path, pl.Schema()).filter(pl.col("ingest_seq").is_in(seqs))
               .group_by("batch_id").agg(rows).collect())
    return dict(counted.iter_rows())


def batch_accounting(layout: RawLayout, manifests: list[dict]) -> list[dict]:
    """Compare committed batches' landed lines with the rows stored for them."""
    seqs = sorted({m["ingest_seq"] for m in manifests})
    stored = {table: _rows_per_batch(layout, table, seqs) for table in _STORED_AS}
    results = []
    for manifest in manifests:
        batch_id = manifest["batch_id"]
        counts = {name: stored[table].get(batch_id, 0) for table, name in _STORED_AS.items()}
        balanced = manifest["landing_lines"] == (counts["parsed"] + counts["duplicates"] + counts["quarantined"]
                                                 + counts["erased"])
        file_recorded = counts["files_quarantined"] == (1 if manifest.get("file_reason") else 0)
        results.append({"success": balanced and file_recorded and counts["signals"] == manifest["signals"],
                        "batch_id": batch_id, "source_file": manifest["source_file"],
                        "landing_lines": manifest["landing_lines"], **counts, "signals_expected": manifest["signals"]})
    return results


def signal_accounting(raw_signals: int, readings: pl.DataFrame, signal_errors: int, quarantined: int) -> dict:
    """Compare a day's raw signals with the signals that became readings, errors or quarantine."""
    read = readings.select(pl.struct("event_id", "signal_index").n_unique()).item() if readings.height else 0
    return {"success": raw_signals == read + signal_errors + quarantined, "raw_signals": raw_signals,
            "signals_read": read, "signal_errors": signal_errors, "signals_quarantined": quarantined}


def raw_signals_per_day(layout: RawLayout) -> dict:
    """The committed raw signals of every day (the day is the table's partition column)."""
    counted = layout.scan("signals", pl.Schema({"day": pl.Date, "ingest_seq": pl.Int64}))
    return dict(counted.group_by("day").len().collect().iter_rows())


def lake_signal_accounting(lake: LakeResource) -> dict:
    """Every raw signal the lake holds, over all days, not only the days a run built: each
    day with committed raw signals must have been built from exactly those signals, and
    balance. A day that was not (never built, or built before later signals came) holds
    signals without an outcome, and fails this."""
    raw, built = RawLayout(lake), ReadingsLayout(lake)
    totals = {"raw_signals": 0, "signals_read": 0, "signal_errors": 0, "signals_quarantined": 0}
    without_outcome: list[str] = []
    counts, states, day_seqs = raw_signals_per_day(raw), built.states(), raw.day_seqs()
    days = sorted(set(counts) | set(day_seqs))
    for day in days:
        raw_signals, state = counts.get(day, 0), states.get(day)
        totals["raw_signals"] += raw_signals
        if (state is None or state["source_seq"] != day_seqs.get(day) or state["raw_signals"] != raw_signals
                or not state["success"]):
            without_outcome.append(day.isoformat())
            continue
        for key in ("signals_read", "signal_errors", "signals_quarantined"):
            totals[key] += state[key]
    outcomes = totals["signals_read"] + totals["signal_errors"] + totals["signals_quarantined"]
    return {"success": not without_outcome and totals["raw_signals"] == outcomes, **totals,
            "days_checked": len(days), "days_without_outcome": without_outcome[:50],
            "days_without_outcome_count": len(without_outcome)}
