"""The lake's floor plan: where each table lives under the data directory, and which
landing files are input. Every module that reads or writes the lake asks this one; nothing
else builds lake paths. Every table is a Delta table (`storage/tables.py`).

Raw tables are appended once per ingest group (new landing files parsed together), each row
carrying the group's `ingest_seq`; the group's rows of `raw/batches` (one per landing file:
what was ingested, with its counts) are appended last, and that commit is the group's
commit. Rows of a later `ingest_seq` than `raw/batches` holds belong to an ingest that was
cut short: readers leave them out, and the next ingest deletes them before it starts.
Readings tables are replaced a UTC day at a time; `_state/readings` says, per day, which
ingest its raw signals were built up to.
"""

from __future__ import annotations

import errno
import os
import stat as st
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from pathlib import Path

import duckdb
import polars as pl

from storage import tables
from storage.resources import LakeResource

LANDING_SUFFIXES = (".ndjson", ".ndjson.gz")

# Where each raw table lives; the rest are under raw/<table>.
_RAW_TABLE_DIRS = {"quarantine": ("quarantine", "deliveries"), "quarantined_files": ("quarantine", "files")}
RAW_TABLES = ("deliveries", "vehicle_errors", "duplicates", "quarantine", "quarantined_files", "signals", "erased")

# Lines of erased vehicles (dropped at ingest, or removed by an erasure): only how many, per
# batch and landing day; nothing of their content.
ERASED_SCHEMA = pl.Schema({"batch_id": pl.String, "landed_on": pl.Date, "lines": pl.Int64})

# One row per ingested landing file version (what the manifests held), appended last by
# each ingest group: the group's commit.
BATCHES_SCHEMA = pl.Schema({
    "batch_id": pl.String, "source_file": pl.String, "size": pl.Int64, "mtime_ns": pl.Int64,
    "ctime_ns": pl.Int64, "sha256": pl.String, "ingested_at": pl.String, "latest_delivered_at": pl.String,
    "landing_lines": pl.Int64, "lines": pl.Int64, "parsed": pl.Int64, "duplicates": pl.Int64,
    "quarantined": pl.Int64, "erased": pl.Int64, "signals": pl.Int64, "vehicle_errors": pl.Int64, "file_reason": pl.String,
    "days": pl.List(pl.String), "ingest_seq": pl.Int64,
})


@dataclass(frozen=True)
class RawLayout:
    lake: LakeResource

    @property
    def batches_table(self) -> Path:
        return self.lake.path("raw", "batches")

    def table_dir(self, table: str) -> Path:
        return self.lake.path(*_RAW_TABLE_DIRS.get(table, ("raw", table)))

    @cached_property
    def batches(self) -> pl.DataFrame:
        """The committed batches in ingest order, read once: a layout serves one step, and a
        batch committed meanwhile is picked up by the next step."""
        return tables.read_small(self.batches_table, BATCHES_SCHEMA).sort("ingest_seq", "source_file",
                                                                          maintain_order=True)

    def manifests(self) -> list[dict]:
        return self.batches.to_dicts()

    @cached_property
    def committed(self) -> frozenset[str]:
        return frozenset(self.batches.get_column("batch_id"))

    @cached_property
    def committed_seq(self) -> int:
        """The last ingest group that committed: rows of a later one were cut short."""
        return self.batches.get_column("ingest_seq").max() or 0

    def scan(self, table: str, schema: pl.Schema) -> pl.LazyFrame:
        """A raw table's committed rows, in `schema`'s columns, lazily."""
        path = self.table_dir(table)
        if not tables.exists(path):
            return schema.to_frame().lazy()
        return tables.scan(path, schema).filter(pl.col("ingest_seq") <= self.committed_seq).select(schema.names())

    def relation(self, con: duckdb.DuckDBPyConnection, table: str) -> duckdb.DuckDBPyRelation | None:
        """A raw table's committed rows as a DuckDB relation; None if it holds none yet."""
        found = tables.relation(con, self.table_dir(table))
        return found.filter(duckdb.ColumnExpression("ingest_seq") <= duckdb.ConstantExpression(self.committed_seq)) \
            if found is not None else None

    def day_seqs(self) -> dict[date, int]:
        """For each UTC day with committed raw signals, the last ingest group that added to it."""
        latest: dict[date, int] = {}
        for days, seq in self.batches.select("days", "ingest_seq").iter_rows():
            for day in map(date.fromisoformat, days or []):
                latest[day] = max(seq, latest.get(day, 0))
        return dict(sorted(latest.items()))

    def signal_days(self) -> list[date]:
        return list(self.day_seqs())


def landing_files(landing: Path) -> list[Path]:
    """Landing files in a stable order, so that which copy of a redelivered event counts
    first does not depend on the file system.

    A landing file is a regular file named `*.ndjson` or `*.ndjson.gz`. Dot-files and
    everything in dot-folders are left alone (writers stage files in progress there), and
    symbolic links are never followed, to files or to folders, so nothing outside landing
    is ever read through it."""
    if not landing.is_dir():  # landing itself may be a link: that is the user's set-up, not data
        return []
    found = []
    for folder, subfolders, names in os.walk(landing, followlinks=False):
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        for name in names:
            path = Path(folder, name)
            if name.startswith(".") or not name.endswith(LANDING_SUFFIXES):
                continue
            try:
                if st.S_ISREG(path.lstat().st_mode):  # not a link, a fifo, a device or a folder
                    found.append(path)
            except FileNotFoundError:
                continue  # gone since it was listed
    return sorted(found, key=lambda p: landing_name(p.relative_to(landing).as_posix()))


def landing_name(relative: str) -> str:
    """A landing file's path relative to landing, as text that is always valid UTF-8: bytes
    of a file name that are not UTF-8 are written as `\\xNN`. It names the file in the lake's
    tables and manifests; no path is ever built from it."""
    return os.fsencode(relative).decode("utf-8", errors="backslashreplace")


def read_landing_file(path: Path, listed: os.stat_result) -> bytes | None:
    """The bytes of a landing file found by `landing_files`, or None if it is no longer the
    regular file that was listed (gone, or replaced by another file or a link since): the
    next run sees what is there then. Raises OSError when the file cannot be read."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:  # it became a symbolic link
            return None
        raise
    with os.fdopen(fd, "rb") as f:
        now = os.fstat(f.fileno())
        if not st.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (listed.st_dev, listed.st_ino):
            return None
        return f.read()


READINGS_STATE_SCHEMA = pl.Schema({
    "day": pl.Date, "source_seq": pl.Int64, "success": pl.Boolean, "raw_signals": pl.Int64,
    "signals_read": pl.Int64, "signal_errors": pl.Int64, "signals_quarantined": pl.Int64,
})


@dataclass(frozen=True)
class ReadingsLayout:
    """Readings, signal errors and quarantined signals: Delta tables partitioned by `day`."""
    lake: LakeResource

    def table(self, kind: str) -> Path:
        """`readings`, `signal_errors` or `quarantine/readings`."""
        return self.lake.path(*kind.split("/"))

    @property
    def state_table(self) -> Path:
        return self.lake.path("_state", "readings")

    def states(self) -> dict[date, dict]:
        """Per built day: the ingest group its raw signals were built up to (`source_seq`)
        and its signal accounting."""
        frame = tables.read_small(self.state_table, READINGS_STATE_SCHEMA)
        return {row["day"]: row for row in frame.to_dicts()}


@dataclass(frozen=True)
class SmartcarLayout:
    """The Smartcar pull's records: one row per vehicle ever listed by `GET /v3/connections`
    (who connected it, since when, whether it still is, and the pull's per-vehicle counters),
    and the pull's model of the application's request bucket."""
    lake: LakeResource

    @property
    def connections_table(self) -> Path:
        return self.lake.path("smartcar", "connections")

    @property
    def bucket_file(self) -> Path:
        return self.lake.path("_state", "smartcar", "bucket.json")
