"""Benchmark: erase one vehicle from a built fleet, as `fleetlake erase` does it.

    uv run --locked python tests/benchmarks/bench_erase.py                       # 200 vehicles × 30 days
    uv run --locked python tests/benchmarks/bench_erase.py --vehicles 50 --days 7 # quicker
    uv run --locked python tests/benchmarks/bench_erase.py --data-dir DIR         # a fleet already built (copied)

Simulates and builds the fleet (`fleetlake demo`, not timed), then erases its first vehicle
in a fresh process and prints the erasure's time, per step (from the receipt), and the files
rewritten against the files there are: landing files, and the lake's data files. Run on
demand: it is not part of the test suite.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).parents[2]


def _fleetlake(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FLEETLAKE_DATA_DIR": str(data_dir)}
    env.pop("DAGSTER_HOME", None)
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=REPO, env=env, check=True,
                          capture_output=True, text=True)


def _count(folder: Path, pattern: str) -> int:
    return sum(1 for p in folder.rglob(pattern) if p.is_file() and "_delta_log" not in p.parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vehicles", type=int, default=200)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--data-dir", type=Path, help="a built data directory to copy instead of simulating one")
    parser.add_argument("--keep", type=Path, help="also keep a copy of the fleet as built here (for --data-dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_erase_") as tmp:
        data = Path(tmp) / "data"
        if args.data_dir:
            shutil.copytree(args.data_dir, data, symlinks=True)
        else:
            started = time.monotonic()
            _fleetlake(data, "init", str(data))
            _fleetlake(data, "demo", "--vehicles", str(args.vehicles), "--days", str(args.days))
            print(f"fleet of {args.vehicles} vehicles × {args.days} days built in {time.monotonic() - started:.1f} s "
                  "(not part of the figure)")
            if args.keep:
                shutil.copytree(data, args.keep, symlinks=True)
        import duckdb

        with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
            vehicle = con.execute("SELECT min(vehicle_id) FROM marts.vehicles").fetchone()[0]
        landing_files = _count(data / "landing", "*.ndjson*")
        lake_files = _count(data / "lake", "*.parquet")
        started = time.monotonic()
        _fleetlake(data, "erase", vehicle)
        wall = time.monotonic() - started
        receipt = json.loads(sorted((data / "privacy" / "receipts").glob("*.json"))[-1].read_text())
        layers = receipt["layers"]
        print(f"erase one vehicle: {wall:.1f} s wall (the process, imports included), {receipt['seconds']} s "
              f"erasure; steps: {receipt['step_seconds']}")
        print(f"records removed: {receipt['records_removed']:,}; landing files rewritten "
              f"{layers['landing']['files_rewritten']} of {landing_files} "
              f"(checked {layers['landing']['files_checked']}); lake data files rewritten by deletes "
              f"{layers['raw']['files_rewritten']} of {lake_files}; readings days rebuilt "
              f"{layers['readings']['days_rebuilt']}; old files deleted with the history "
              f"{layers['history']['old_files_deleted']}; Dagster runs deleted {layers['dagster']['runs_deleted']}")
        with open("/proc/loadavg") as f:
            print(f"load average: {f.read().split()[:3]}")


if __name__ == "__main__":
    main()
