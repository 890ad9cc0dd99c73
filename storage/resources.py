"""Resources for the external systems Fleetlake touches: the lake on disk and the DuckDB warehouse."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from storage.data_dir import DEFAULT_DATA_DIR
from storage.files import inside, make_owner_only
from storage.errors import UserError


def data_dir_setting() -> str | dg.EnvVar:
    """`FLEETLAKE_DATA_DIR` as an EnvVar when it is set (the UI then shows where the value
    comes from), else the documented default `./data`."""
    return dg.EnvVar("FLEETLAKE_DATA_DIR") if os.getenv("FLEETLAKE_DATA_DIR") else DEFAULT_DATA_DIR


class LakeResource(dg.ConfigurableResource):
    """Everything Fleetlake keeps on disk under one data directory (see DESIGN.md)."""

    data_dir: str = DEFAULT_DATA_DIR
    # How long a lake table keeps the files of its old versions (Delta's vacuum retention)
    # after a write replaced or deleted them. Small, so that removed data does not linger;
    # long enough for a reader that started on the previous version to finish.
    retention_hours: float = 1.0

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        make_owner_only(self.root)  # whichever process runs the assets (CLI, UI, daemon)

    @property
    def root(self) -> Path:
        return Path(self.data_dir)

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def lake(self) -> Path:
        return self.root / "lake"

    @property
    def warehouse_path(self) -> Path:
        return self.root / "warehouse.duckdb"

    def path(self, *parts: str) -> Path:
        """A path in the lake; refused (OutsideRoot) if it would resolve outside it."""
        return inside(self.lake, self.lake.joinpath(*parts))


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB file that holds the marts. DuckDB allows one writer per file, so the mart
    assets share one concurrency pool (see definitions) and a connection waits briefly for a
    lock held by a reader (a notebook, the CLI) instead of failing at once."""

    data_dir: str = DEFAULT_DATA_DIR
    lock_timeout_s: float = 30.0
    # How much a full build of the per-vehicle marts reads at once: batches of whole vehicles'
    # histories, at most this many vehicles and this many of their deliveries (about 100 cars
    # × 30 days at one delivery every 15 minutes), so that its memory follows the batch, not
    # the size of the fleet nor the length of its history.
    batch_vehicles: int = 100
    batch_deliveries: int = 300_000
    # DuckDB's own memory (its buffer pool, its operators, which spill to disk beyond it);
    # by default DuckDB takes 80 % of the machine's. Its buffer pool keeps the pages of the
    # marts it reads, which grow with the history, up to this: at 1GB the mileage marts'
    # peaks still grew from 30 to 60 days at 1,000 vehicles; at 512MB their 60-day peaks were
    # below their 30-day ones at 1GB (README, performance).
    memory_limit: str = "512MB"

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        make_owner_only(Path(self.data_dir))

    @property
    def path(self) -> Path:
        return Path(self.data_dir) / "warehouse.duckdb"

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        if read_only and not self.path.exists():
            raise UserError(f"no warehouse at {self.path}: run `fleetlake run` first")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_s
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as error:
                if "lock" not in str(error).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        try:
            con.execute("SET memory_limit = ?", [self.memory_limit]).fetchall()
            yield con
        finally:
            con.close()
