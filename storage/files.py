"""Atomic writes of small files (check results, the pull's state; the lake's tables are
Delta tables, see tables.py): write to a hidden temporary file beside the target, then
rename, so a reader never sees a half-written file and a crash leaves only the temporary
behind. The one guard every written path passes: it must resolve inside its root. And the
rule that what Fleetlake keeps is its owner's alone."""

from __future__ import annotations

import os
from pathlib import Path



class OutsideRoot(ValueError):
    """A path that would resolve outside the directory it must stay in."""


def inside(root: Path, path: Path) -> Path:
    """`path`, if it resolves (symbolic links and `..` followed) inside `root`; else OutsideRoot."""
    if not Path(path).resolve().is_relative_to(Path(root).resolve()):
        raise OutsideRoot(f"{path} is outside {root}")
    return Path(path)


def write_text_atomic(text: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_bytes_durably(data: bytes, path: Path) -> Path:
    """Replace `path` with `data` atomically and durably: a hidden temporary beside it,
    fsynced, renamed into place, and the rename fsynced with its folder (survives a crash)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return path


OWNER_ONLY_UMASK = 0o077  # files 0600, directories 0700


def make_owner_only(data_dir: Path) -> None:
    """Close the data directory to other local users: this process creates every file and
    directory from now on readable by its owner only (the umask also covers what DuckDB,
    Dagster and the Parquet writers create), and the data directory itself becomes 0700,
    which also shuts out anything written there before."""
    os.umask(OWNER_ONLY_UMASK)
    if Path(data_dir).is_dir():
        os.chmod(data_dir, 0o700)
