"""Giving freed memory back to the operating system between units of work."""

import atexit
import ctypes
import ctypes.util
import gc
from functools import cache

import polars as pl


@cache
def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


@cache
def _unfreeze_at_exit() -> None:
    # collected at exit as usual (nanobind reports what is not); a flag, since
    # `gc.get_freeze_count` walks every frozen object (about 60 ms here)
    atexit.register(gc.unfreeze)


def release_freed_memory() -> None:
    """Return the heap pages that freed objects left behind (glibc's `malloc_trim`). glibc
    keeps them in its per-thread arenas after pandas, Arrow and delta-rs free a unit of work
    (a day of readings, a batch of vehicles), and the next unit rarely fits them exactly, so
    the process would grow by a unit's worth of fragments each time. Does nothing where the C
    library has no `malloc_trim` (musl, macOS).

    What survives the collection is frozen (`gc.freeze`): it is mostly what lives as long as
    the process (modules, Dagster's definitions, GX), and a full collection over it costs
    about 0.3 s each time, a large part of a small incremental build."""
    gc.collect()
    _unfreeze_at_exit()
    gc.freeze()
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def owned(frame: pl.DataFrame) -> pl.DataFrame:
    """A copy of the frame whose strings are its own. Polars' string columns share the
    buffers of the frame they were filtered or sliced from, so that a few rows kept from a
    batch (its sessions, a preview) would keep the whole batch's strings alive."""
    return pl.from_arrow(frame.to_arrow(compat_level=pl.CompatLevel.oldest()))  # type: ignore[return-value]
