"""The lake's floor plan: where each table's files live under the data directory, which
of them are committed, and which landing files are input. Every module that reads or
writes the lake asks this one; nothing else builds lake paths.

Raw tables are written per batch (one landing file); a batch's manifest
(`raw/_batches/<batch_id>.json`) is written last and is its commit. Readings tables are
written per UTC day, with a state file saying which raw batches the day was built from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from pathlib import Path

from storage.resources import LakeResource

LANDING_PATTERNS = ("*.ndjson", "*.ndjson.gz")


@dataclass(frozen=True)
class RawLayout:
    lake: LakeResource

    @property
    def batches_dir(self) -> Path:
        return self.lake.path("raw", "_batches")

    def table_file(self, table: str, batch_id: str) -> Path:
        return self.lake.path("raw", table, f"{batch_id}.parquet")

    def signals_file(self, day: date, batch_id: str) -> Path:
        return self.lake.path("raw", "signals", f"day={day.isoformat()}", f"{batch_id}.parquet")

    def quarantine_file(self, batch_id: str) -> Path:
        return self.lake.path("quarantine", "deliveries", f"{batch_id}.parquet")

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
        """Files of a per-batch table (deliveries, vehicle_errors, duplicates) that are committed."""
        folder = self.quarantine_file("x").parent if table == "quarantine" else self.lake.path("raw", table)
        return sorted(p for p in folder.glob("*.parquet") if p.stem in self.committed)

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
    first does not depend on the file system."""
    if not landing.exists():
        return []
    found = {p for pattern in LANDING_PATTERNS for p in landing.rglob(pattern) if p.is_file()}
    return sorted(found, key=lambda p: p.relative_to(landing).as_posix())


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

    def built_from(self, day: date) -> list[str] | None:
        path = self.state_file(day)
        return json.loads(path.read_text())["sources"] if path.exists() else None

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
