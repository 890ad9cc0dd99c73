"""Erasure's primitives below the lake's tables: which text mentions an erased id, and
removing lines from a landing file in place.

A landing file is rewritten atomically: the new content is written to a dot-file beside it
(ingest ignores dot-files), flushed to disk, then renamed over it; gzip stays gzip. A crash
leaves the old file or the new one, never a half-written one.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from storage.files import write_bytes_durably


def spellings(value: str) -> list[str]:
    """How an id can appear in a JSON line: as it is, and JSON-escaped (a quote or a
    backslash in it is escaped; non-ASCII may be written as \\uXXXX)."""
    forms = {value, json.dumps(value, ensure_ascii=False)[1:-1], json.dumps(value)[1:-1]}
    return sorted(f for f in forms if f)


def search_terms(values: Iterable[str]) -> list[bytes]:
    return sorted({s.encode("utf-8", "surrogatepass") for v in values if v for s in spellings(v)})


def mentions(data: bytes, terms: list[bytes]) -> bool:
    return any(t in data for t in terms)


@dataclass(frozen=True)
class Rewritten:
    lines_removed: int
    size: int
    mtime_ns: int
    ctime_ns: int
    sha256: str


def _lines(data: bytes) -> list[bytes]:
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def _decompress(data: bytes) -> bytes:
    """Every complete gzip member (a cut or corrupt tail is dropped: it cannot be read, so
    it cannot be told apart from the erased vehicle's data)."""
    out = []
    while data.strip(b"\0"):
        member = zlib.decompressobj(wbits=31)
        try:
            text = member.decompress(data)
        except zlib.error:
            break
        if not member.eof:
            # a cut member: keep its complete lines only
            out.append(text[: text.rfind(b"\n") + 1])
            break
        out.append(text)
        data = member.unused_data
    return b"".join(out)


def landing_text(path: Path) -> bytes:
    """A landing file's lines as bytes, decompressed when it is gzip."""
    data = path.read_bytes()
    return _decompress(data) if path.name.endswith(".gz") else data


def rewrite_landing_file(path: Path, remove: Callable[[bytes], bool], terms: list[bytes]) -> Rewritten | None:
    """Rewrite one landing file without the lines `remove` selects. A file that does not
    mention any of `terms` is not even decompressed further. Returns what was written, or
    None when nothing had to be removed (the file is left untouched)."""
    gzipped = path.name.endswith(".gz")
    data = landing_text(path)
    if not mentions(data, terms):
        return None
    lines = _lines(data)
    kept = [line for line in lines if not remove(line)]
    if len(kept) == len(lines):
        return None
    content = b"".join(line + b"\n" for line in kept)
    if gzipped:
        content = gzip.compress(content, mtime=0)
    write_bytes_durably(content, path)
    stat = path.lstat()
    return Rewritten(len(lines) - len(kept), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns,
                     hashlib.sha256(content).hexdigest())


def line_owner_ids(line: bytes) -> tuple[str | None, str | None]:
    """The vehicle id and user id a landing line names as a delivery (as ingest reads them:
    `data.vehicle.id`, else a top-level `vehicleId`; `data.user.id`), or (None, None) when it
    is no JSON object."""
    try:
        doc = json.loads(line)
    except ValueError:
        return None, None
    if not isinstance(doc, dict):
        return None, None
    data = doc.get("data") if isinstance(doc.get("data"), dict) else {}
    vehicle = data.get("vehicle") if isinstance(data.get("vehicle"), dict) else {}
    user = data.get("user") if isinstance(data.get("user"), dict) else {}
    vid = vehicle.get("id") if vehicle.get("id") is not None else doc.get("vehicleId")
    uid = user.get("id")
    return (vid if isinstance(vid, str) else None), (uid if isinstance(uid, str) else None)


def belongs_to(vehicle_ids: set[str], user_ids: set[str], terms: list[bytes]) -> Callable[[bytes], bool]:
    """The rule for a line: it is the vehicle's when it names one of the vehicles or users;
    a line that names no vehicle (malformed) is theirs when it mentions any of `terms`."""
    def remove(line: bytes) -> bool:
        if not mentions(line, terms):
            return False
        vid, uid = line_owner_ids(line)
        if vid is None or not vid.strip():
            return True
        return vid in vehicle_ids or (uid is not None and uid in user_ids)
    return remove
