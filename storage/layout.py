"""The lake's floor plan: where each table's files live under the data directory, which
of them are committed, and which landing files are input. Every module that reads or
writes the lake asks this one; nothing else builds lake paths.

Raw tables are written per batch (one landing file); a batch's manifest
(`raw/_batches/<batch_id>.json`) is written last and is its commit. Readings tables are
written per UTC day, with a state file saying which raw batches the day was built from.
"""

from __future__ import annotations

import errno
import json
import os
import stat as st
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from pathlib import Path

from storage.resources import LakeResource

LANDING_SUFFIXES = (".ndjson", ".ndjson.gz")

# Per-batch tables and where their files live.
_BATCH_TABLE_DIRS = {"quarantine": ("quarantine", "deliveries"), "quarantined_files": ("quarantine", "files")}


@dataclass(frozen=True)
class RawLayout:
    lake: LakeResource

    @property
    def batches_dir(self) -> Path:
        return self.lake.path("raw", "_batches")

    def table_dir(self, table: str) -> Path:
        return self.lake.path(*_BATCH_TABLE_DIRS.get(table, ("raw", table)))

    def table_file(self, table: str, batch_id: str) -> Path:
        return self.table_dir(table) / f"{batch_id}.parquet"

    def signals_file(self, day: date, batch_id: str) -> Path:
        return self.lake.path("raw", "signals", f"day={day.isoformat()}", f"{batch_id}.parquet")

    def quarantine_file(self, batch_id: str) -> Path:
        return self.table_file("quarantine", batch_id)

    def file_quarantine_file(self, batch_id: str) -> Path:
        """The record of a landing file quarantined as a file (unreadable, corrupt or cut)."""
        return self.table_file("quarantined_files", batch_id)

    def manifests(self) -> list[dict]:
        if not self.batches_dir.exists():
            return []
        return [json.loads(p.read_text()) for p in sorted(self.batches_dir.glob("*.json"))]

    @cached_property
    def committed(self) -> frozenset[str]:
        """The ids of the committed batches, read once: a layout serves one step, and a batch
        committed meanwhile is picked up by the next step."""
        return frozenset(m["batch_id"] for m in self.manifests())

    def committed_files(self, table: str) -> list[Path]:
        """Files of a per-batch table (deliveries, vehicle_errors, duplicates, quarantine,
        quarantined_files) that are committed."""
        return sorted(p for p in self.table_dir(table).glob("*.parquet") if p.stem in self.committed)

    def committed_signal_files(self, day: date) -> list[Path]:
        folder = self.signals_file(day, "x").parent
        return sorted(p for p in folder.glob("*.parquet") if p.stem in self.committed)

    def signal_days(self) -> list[date]:
        folder = self.lake.path("raw", "signals")
        if not folder.exists():
            return []
        return sorted(date.fromisoformat(p.name.removeprefix("day=")) for p in folder.glob("day=*"))


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


@dataclass(frozen=True)
class ReadingsLayout:
    lake: LakeResource

    def _day(self, *parts: str, day: date) -> Path:
        return self.lake.path(*parts, f"day={day.isoformat()}", "part-0.parquet")

    def readings_file(self, day: date) -> Path:
        return self._day("readings", day=day)

    def signal_errors_file(self, day: date) -> Path:
        return self._day("signal_errors", day=day)

    def quarantine_file(self, day: date) -> Path:
        return self._day("quarantine", "readings", day=day)

    def state_file(self, day: date) -> Path:
        return self.lake.path("_state", "readings", f"{day.isoformat()}.json")

    def state(self, day: date) -> dict | None:
        """What the day was built from (`sources`) and its signal accounting, if it was built."""
        path = self.state_file(day)
        return json.loads(path.read_text()) if path.exists() else None

    def built_from(self, day: date) -> list[str] | None:
        state = self.state(day)
        return state["sources"] if state else None

    def files(self, kind: str) -> list[Path]:
        """Every day file of `readings`, `signal_errors` or `quarantine/readings`."""
        folder = self.lake.path(*kind.split("/"))
        return sorted(folder.glob("day=*/part-0.parquet")) if folder.exists() else []


def lake_files(lake: LakeResource) -> dict[str, list[Path]]:
    raw, built = RawLayout(lake), ReadingsLayout(lake)
    return {
        "deliveries": raw.committed_files("deliveries"),
        "duplicates": raw.committed_files("duplicates"),
        "quarantined_lines": raw.committed_files("quarantine"),
        "quarantined_files": raw.committed_files("quarantined_files"),
        "raw_vehicle_errors": raw.committed_files("vehicle_errors"),
        "readings": built.files("readings"),
        "signal_errors": built.files("signal_errors"),
        "quarantined_signals": built.files("quarantine/readings"),
    }


@dataclass(frozen=True)
class SmartcarLayout:
    """The Smartcar pull's records: one row per vehicle ever listed by `GET /v3/connections`
    (who connected it, since when, whether it still is, and the pull's per-vehicle counters),
    and the pull's model of the application's request bucket."""
    lake: LakeResource

    @property
    def connections_file(self) -> Path:
        return self.lake.path("smartcar", "connections", "part-0.parquet")

    @property
    def bucket_file(self) -> Path:
        return self.lake.path("_state", "smartcar", "bucket.json")
