"""The data directory: what makes a directory one, creating it, and the Dagster instance
kept in it. Light on imports: the command line checks the data directory before it loads
Dagster, Polars and DuckDB, which take seconds."""

from __future__ import annotations

import os
from pathlib import Path

from storage.errors import UserError

DEFAULT_DATA_DIR = "data"
LANDING = "landing"
DAGSTER_HOME = "dagster"  # the Dagster instance that records the commands' runs, under the data dir

# The instance's settings (`dagster.yaml`): every concurrency pool to one step at a time
# across runs: `warehouse` (DuckDB allows one writer per file) and `lake`.
DAGSTER_YAML = """\
# Written by Fleetlake for the Dagster instance of this data directory.
concurrency:
  pools:
    default_limit: 1
telemetry:
  enabled: false
"""


def landing_hint(data_dir: Path) -> str:
    return (f"landing files (Smartcar deliveries, *.ndjson or *.ndjson.gz) are expected in {data_dir / LANDING}/; "
            f"`fleetlake init {data_dir}` creates it")


def usable_data_dir(data_dir: str | Path) -> Path:
    """A data directory that exists must be a directory Fleetlake can read and write."""
    path = Path(data_dir)
    if path.exists() and not path.is_dir():
        raise UserError(f"the data directory {path} is not a directory")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise UserError(f"the data directory {path} cannot be read and written by this user")
    return path


def existing_data_dir(data_dir: str | Path) -> Path:
    """A data directory that is there, with its landing folder: a mistyped path is refused,
    never created."""
    path = Path(data_dir)
    if not path.exists():
        raise UserError(f"no data directory at {path}: {landing_hint(path)} "
                        "(or give --data-dir or FLEETLAKE_DATA_DIR)")
    usable_data_dir(path)
    if not (path / LANDING).is_dir():
        raise UserError(f"{path} is not a Fleetlake data directory (it has no {LANDING}/): {landing_hint(path)}")
    return path


def dagster_home(data_dir: str | Path) -> Path:
    """Where the commands' Dagster instance lives: $DAGSTER_HOME when set, else
    <data dir>/dagster, created with its dagster.yaml when missing."""
    if os.getenv("DAGSTER_HOME"):
        return Path(os.environ["DAGSTER_HOME"])
    home = (Path(data_dir) / DAGSTER_HOME).absolute()
    settings = home / "dagster.yaml"
    if not settings.exists():
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        staged = home / ".dagster.yaml.tmp"
        staged.write_text(DAGSTER_YAML)
        staged.replace(settings)
    return home


def init_data_dir(data_dir: str | Path) -> tuple[Path, bool]:
    """Create a data directory (owner-only) with its landing folder and Dagster instance.
    Returns it and whether it was created (False: it was one already)."""
    path = usable_data_dir(data_dir)
    created = not (path / LANDING).is_dir()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    (path / LANDING).mkdir(mode=0o700, exist_ok=True)
    if not os.getenv("DAGSTER_HOME"):
        dagster_home(path)
    return path, created
