"""What to do after `fleetlake demo` or `fleetlake run`: the commands that read what was built."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import duckdb

from storage.data_dir import DAGSTER_HOME


def _example_vehicle(warehouse: Path) -> tuple[str, str, str] | None:
    """A vehicle and a month of the mileage marts, to make the mileage command concrete."""
    try:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            rows = con.sql("SELECT vehicle_id, period_start, period_end FROM marts.mileage_verification "
                          "ORDER BY status = 'VERIFIED' DESC, vehicle_id, period_start LIMIT 1").fetchall()
    except duckdb.Error:
        return None
    return (rows[0][0], rows[0][1].isoformat(), rows[0][2].isoformat()) if rows else None


def next_steps(data_dir: Path) -> str:
    warehouse = data_dir / "warehouse.duckdb"
    option = "" if str(data_dir) == "data" else f" --data-dir {shlex.quote(str(data_dir))}"
    env = "" if str(data_dir) == "data" else f"FLEETLAKE_DATA_DIR={shlex.quote(str(data_dir))} "
    query = (f"uv run --locked python -c \"import duckdb; print(duckdb.connect('{warehouse}', read_only=True)"
             ".sql('FROM marts.mileage_verification LIMIT 10'))\"")
    example = _example_vehicle(warehouse)
    mileage = (f"uv run --locked fleetlake{option} mileage {shlex.quote(example[0])} --from {example[1]} "
               f"--to {example[2]}" if example else
               f"uv run --locked fleetlake{option} mileage --all --from YYYY-MM-01 --to YYYY-MM-DD")
    home = Path(os.getenv("DAGSTER_HOME") or (data_dir / DAGSTER_HOME).absolute())
    steps = [
        ("query", query),
        ("notebooks", f"{env}uv run --locked --with jupyterlab jupyter lab notebooks/"),
        ("Dagster UI", f"FLEETLAKE_DATA_DIR={shlex.quote(str(data_dir))} DAGSTER_HOME={shlex.quote(str(home))} "
                       "uv run --locked dg dev"),
        ("maintenance", f"uv run --locked fleetlake{option} maintenance --due-within 30"),
        ("mileage", mileage),
    ]
    width = max(len(what) for what, _ in steps)
    return "\n".join(["next:"] + [f"  {what + ':':<{width + 1}}  {how}" for what, how in steps])
