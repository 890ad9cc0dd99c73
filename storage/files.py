"""Atomic writes of small files (check results, the pull's state; the lake's tables are
Delta tables, see tables.py): write to a hidden temporary file beside the target, then
rename, so a reader never sees a half-written file and a crash leaves only the temporary
behind. And the one guard every written path passes: it must resolve inside its root."""

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
