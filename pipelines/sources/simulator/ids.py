"""Identifiers made from the seeded generator: UUIDs (version 4 layout) and VINs."""
from __future__ import annotations

import numpy as np

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# positions of the 32 hex digits inside the 36-char canonical form
_POS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)], dtype=np.int64)


def uuids(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random UUID strings (RFC 4122 version 4 layout), as a numpy unicode array."""
    if n == 0:
        return np.array([], dtype="<U36")
    b = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    b[:, 6] = (b[:, 6] & 0x0F) | 0x40
    b[:, 8] = (b[:, 8] & 0x3F) | 0x80
    digits = np.empty((n, 32), dtype=np.uint8)
    digits[:, 0::2] = _HEX[b >> 4]
    digits[:, 1::2] = _HEX[b & 0x0F]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    out[:, _POS] = digits
    return out.view("S36").ravel().astype("<U36")


def uuid(rng: np.random.Generator) -> str:
    return str(uuids(rng, 1)[0])


_TRANSLIT = {**{str(d): d for d in range(10)},
             **dict(zip("ABCDEFGH", range(1, 9))), **dict(zip("JKLMN", range(1, 6))),
             "P": 7, "R": 9, **dict(zip("STUVWXYZ", range(2, 10)))}
_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_YEAR_CODES = {y: c for y, c in zip(range(2010, 2031), "ABCDEFGHJKLMNPRSTVWXY")}
_VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"


def vin(wmi: str, vds: str, year: int, plant: str, serial: int) -> str:
    """A VIN with a valid check digit (position 9)."""
    body = f"{wmi}{vds}0{_YEAR_CODES[year]}{plant}{serial:06d}"
    total = sum(_TRANSLIT[c] * w for c, w in zip(body, _WEIGHTS))
    check = total % 11
    return body[:8] + ("X" if check == 10 else str(check)) + body[9:]


def vin_check_ok(v: str) -> bool:
    total = sum(_TRANSLIT[c] * w for c, w in zip(v, _WEIGHTS))
    check = total % 11
    return v[8] == ("X" if check == 10 else str(check))
