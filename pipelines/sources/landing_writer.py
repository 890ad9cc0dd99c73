"""The one way into landing. Every source (the simulator, the Smartcar puller, the webhook
receiver) writes its deliveries through this module, which owns the landing contract's
side of writing:

- format: NDJSON, one delivery body per line, UTF-8, each line ending in a newline;
  `*.ndjson.gz` is one gzip member (mtime 0, no name, so the same lines give the same bytes);
- naming: `<source>/YYYY/MM/DD/<source>-<UTC time>-<unique>.ndjson[.gz]`, from the
  source's constant name and the clock, never from data;
- visibility: a file is written under the dot-folder `landing/.in-progress/` (ingest
  ignores dot-files and dot-folders), fsynced, then renamed into place and its folder
  fsynced, so ingest only ever sees complete files and a file it sees survives a crash;
- rotation (`RollingLandingFile`): a long-running source appends durably to one open file
  and publishes it when it reaches a size or an age;
- group commit (`GroupCommit`): concurrent appends of an asyncio server share one fsync.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

IN_PROGRESS_DIR = ".in-progress"
_SOURCE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync(fd: int) -> None:
    """Make a file's data durable (fdatasync where there is one: the size is included)."""
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def landing_target(landing: Path, relative: str) -> Path:
    """`landing/<relative>`, refused unless it is a landing file name that stays inside
    landing and outside its dot-folders."""
    parts = Path(relative).parts
    if (Path(relative).is_absolute() or not parts or any(p in ("", ".", "..") or p.startswith(".") for p in parts)
            or not relative.endswith((".ndjson", ".ndjson.gz"))):
        raise ValueError(f"not a landing file name: {relative!r}")
    target = (landing / relative).resolve()
    if not target.is_relative_to(landing.resolve()):
        raise ValueError(f"not a landing file name: {relative!r}")
    return landing / relative


def dated_name(source: str, at: datetime | None = None, *, gz: bool = False) -> str:
    """A fresh landing file name for `source` (a constant such as "smartcar-pull")."""
    if not _SOURCE_NAME.fullmatch(source):
        raise ValueError(f"not a source name: {source!r}")
    at = (at or datetime.now(UTC)).astimezone(UTC)
    stamp = at.strftime("%Y%m%dT%H%M%S%fZ")
    return f"{source}/{at:%Y/%m/%d}/{source}-{stamp}-{uuid.uuid4().hex[:12]}.ndjson{'.gz' if gz else ''}"


def _staging_path(landing: Path, relative: str) -> Path:
    staging = landing / IN_PROGRESS_DIR
    staging.mkdir(parents=True, exist_ok=True)
    return staging / f"{uuid.uuid4().hex}-{Path(relative).name}"


def _publish(staged: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, target)
    _fsync_dir(target.parent)
    return target


def write_landing_file(landing: Path, relative: str, chunks: Iterable[str], *, gzip_level: int = 6) -> Path:
    """Write a complete landing file at `landing/<relative>` from text chunks (whole lines,
    each ending in a newline): staged, fsynced, then renamed into place."""
    target = landing_target(landing, relative)
    staged = _staging_path(landing, relative)
    compressor = zlib.compressobj(gzip_level, zlib.DEFLATED, 31) if relative.endswith(".gz") else None  # 31: gzip
    with open(staged, "wb") as out:
        for chunk in chunks:
            data = chunk.encode("utf-8")
            out.write(compressor.compress(data) if compressor else data)
        if compressor:
            out.write(compressor.flush())
        out.flush()
        os.fsync(out.fileno())
    return _publish(staged, target)


class RollingLandingFile:
    """An append-only landing file for a long-running source. `append` returns once the
    lines are on disk (fsync), so a caller may acknowledge them; the file is published
    (renamed into landing, visible to ingest) when it holds `max_bytes` or is `max_age_s`
    old, and on `close`. Appends from several threads are serialised. A file left in
    progress by a crash is published by `recover`, without any partial last line (one
    that was never acknowledged)."""

    def __init__(self, landing: Path, source: str, *, max_bytes: int = 64 << 20, max_age_s: float = 60.0):
        self.landing, self.source = Path(landing), source
        self.max_bytes, self.max_age_s = max_bytes, max_age_s
        self._lock = threading.Lock()
        self._file = None
        self._staged: Path | None = None
        self._target = ""
        self._opened_at = 0.0
        self._size = 0

    def _open(self) -> None:
        self._target = dated_name(self.source)
        self._staged = _staging_path(self.landing, self._target)
        self._file = open(self._staged, "ab")
        self._opened_at, self._size = time.monotonic(), 0

    def append(self, lines: list[bytes]) -> None:
        """Append whole lines (without their newline) durably. If the write fails, the file is
        cut back to its last durable line, so a later append never follows a partial one."""
        data = b"".join(line + b"\n" for line in lines)
        with self._lock:
            if self._file is None:
                self._open()
            try:
                self._file.write(data)
                self._file.flush()
                _sync(self._file.fileno())
            except BaseException:
                self._cut_back()
                raise
            self._size += len(data)
            if self._size >= self.max_bytes or time.monotonic() - self._opened_at >= self.max_age_s:
                self._roll()

    def _cut_back(self) -> None:
        try:
            self._file.truncate(self._size)
            self._file.seek(self._size)
            _sync(self._file.fileno())
        except OSError:  # cannot repair it: leave it to `recover`, and start a new file
            self._file = None

    def roll_if_old(self) -> None:
        """Publish the open file if it is older than `max_age_s` (call it from a timer)."""
        with self._lock:
            if self._file is not None and time.monotonic() - self._opened_at >= self.max_age_s:
                self._roll()

    def _roll(self) -> None:
        self._file.close()
        self._file = None
        target = landing_target(self.landing, self._target)
        if self._size:
            _publish(self._staged, target)
        else:
            self._staged.unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._roll()

    def recover(self) -> list[Path]:
        """Publish the files this source left in progress (a crash), each cut after its
        last complete line. Returns the paths published."""
        staging = self.landing / IN_PROGRESS_DIR
        published = []
        for staged in sorted(staging.glob("*.ndjson")) if staging.exists() else []:
            name = staged.name.split("-", 1)[-1]  # drop the staging prefix
            if not (name.startswith(f"{self.source}-") and name[len(self.source) + 1:][:1].isdigit()):
                continue  # another source's file
            with self._lock:
                if staged == self._staged:
                    continue
            data = staged.read_bytes()
            complete = data[: data.rfind(b"\n") + 1]
            if not complete:
                staged.unlink()
                continue
            if len(complete) < len(data):
                with open(staged, "r+b") as f:
                    f.truncate(len(complete))
                    os.fsync(f.fileno())
            at = datetime.strptime(name.split("-")[-2], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
            published.append(_publish(staged, landing_target(self.landing, f"{self.source}/{at:%Y/%m/%d}/{name}")))
        return published


class GroupCommit:
    """Group commit for an asyncio server: deliveries that arrive while a write is on disk
    wait for the next one, so every delivery waiting at that moment shares one fsync.
    `append` returns once its line is durable (or raises what the write raised). The write
    and its fsync run on one thread of their own, off the event loop, which keeps taking
    requests meanwhile."""

    def __init__(self, file: RollingLandingFile):
        self.file = file
        self._pending: list[bytes] = []
        self._waiters: list[asyncio.Future] = []
        self._writer: asyncio.Task | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="landing-fsync")

    async def append(self, line: bytes) -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._pending.append(line)
        self._waiters.append(done)
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write())
        await done

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            lines, waiters = self._pending, self._waiters
            self._pending, self._waiters = [], []
            try:
                await loop.run_in_executor(self._thread, self.file.append, lines)
            except Exception as error:  # every waiter learns it, and answers "not stored"
                for done in waiters:
                    if not done.done():
                        done.set_exception(error)
            else:
                for done in waiters:
                    if not done.done():
                        done.set_result(None)

    def close(self) -> None:
        self._thread.shutdown(wait=True)
