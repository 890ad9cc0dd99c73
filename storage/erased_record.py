"""The record of erased vehicles and users: what keeps an erased vehicle from coming back.

It holds no id in the clear, only a keyed hash of each (HMAC-SHA256), so the record itself
is no personal data to whoever reads it without the key. The key comes from
`FLEETLAKE_ERASURE_KEY`, else from an owner-only key file created under the data directory
on first use (`privacy/erasure.key`, 0600); it is never logged. Whoever holds the key can
test a guessed id against the record, which is what ingest does.

Each entry also says whether its erasure completed: the entry is written first (the intent),
so that ingest drops the vehicle from then on, whatever happens to the erasure itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from storage.files import write_text_atomic

KEY_ENV = "FLEETLAKE_ERASURE_KEY"
PRIVACY_DIR = "privacy"
VEHICLE, USER = "vehicle", "user"


def privacy_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / PRIVACY_DIR


def erasure_key(data_dir: str | Path) -> bytes:
    """The HMAC key: the environment's, else the key file's (created 0600 on first use)."""
    if os.getenv(KEY_ENV):
        return os.environ[KEY_ENV].encode("utf-8")
    path = privacy_dir(data_dir) / "erasure.key"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_hex(32).encode())
        f.flush()
        os.fsync(f.fileno())
    return path.read_bytes().strip()


def keyed_hash(key: bytes, kind: str, value: str) -> str:
    """The record's name for one id: a vehicle id and a user id that are the same text
    still get different hashes."""
    message = f"{kind}\n{value}".encode("utf-8", "surrogatepass")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


@dataclass
class ErasedRecord:
    """`privacy/erased.json`: one entry per erased vehicle or user, by keyed hash."""
    data_dir: Path

    @property
    def path(self) -> Path:
        return privacy_dir(self.data_dir) / "erased.json"

    def key(self) -> bytes:
        return erasure_key(self.data_dir)

    def entries(self) -> dict[str, dict]:
        if not self.path.exists():
            return {}
        return {e["hash"]: e for e in json.loads(self.path.read_text(encoding="utf-8"))["erased"]}

    def hashes(self, kind: str, values: Iterable[str]) -> dict[str, str]:
        key = self.key()
        return {value: keyed_hash(key, kind, value) for value in values}

    def _write(self, entries: dict[str, dict]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        text = json.dumps({"erased": sorted(entries.values(), key=lambda e: e["hash"])}, indent=1)
        write_text_atomic(text, self.path)

    def record_intent(self, kind: str, values: Iterable[str]) -> list[str]:
        """Add the ids (as keyed hashes) before anything is erased; an id recorded before
        keeps its first request time. Returns their hashes."""
        entries = self.entries()
        now = datetime.now(UTC).isoformat(timespec="seconds")
        hashes = list(self.hashes(kind, values).values())
        for h in hashes:
            entries.setdefault(h, {"hash": h, "kind": kind, "requested_at": now, "completed_at": None})
        self._write(entries)
        return hashes

    def mark_completed(self, hashes: Iterable[str]) -> None:
        entries = self.entries()
        now = datetime.now(UTC).isoformat(timespec="seconds")
        for h in hashes:
            entries[h]["completed_at"] = now
        self._write(entries)

    def erased_among(self, kind: str, values: Iterable[str]) -> set[str]:
        """Which of these ids (in the clear, as ingest sees them) are erased."""
        entries = self.entries()
        if not entries:
            return set()
        return {value for value, h in self.hashes(kind, set(values)).items()
                if h in entries and entries[h]["kind"] == kind}
