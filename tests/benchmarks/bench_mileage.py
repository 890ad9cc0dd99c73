"""Benchmark: the mileage marts and the insurer's macros on the benchmark fleet.

    uv run --locked python tests/benchmarks/bench_mileage.py [--vehicles 200 --days 30 --interval 15]
                                                              [--asleep-interval 15] [--data-dir DIR]

Simulates the fleet (or reuses a `--data-dir` built before), builds everything as `fleetlake run`
does, then times, each in this process: the odometer assessment (`marts.odometer_readings`,
once per build), `marts.mileage_verification` with its macros, and the latency of
`marts.verified_mileage(vehicle, start, end)` and `marts.mileage_evidence(...)` for one
vehicle over one year, on a read-only connection as an insurer's session would open it
(first call, then the median and worst of the repeats). Run on demand: it is not part of
the test suite.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).parents[2]
sys.path.insert(0, str(REPO))


def timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


def latencies(con, query: str, params: list, repeats: int) -> tuple[float, list[float], int]:
    first, rows = None, 0
    runs = []
    for i in range(repeats + 1):
        started = time.perf_counter()
        rows = len(con.sql(query, params=params).fetchall())
        elapsed = time.perf_counter() - started
        if i == 0:
            first = elapsed
        else:
            runs.append(elapsed)
    return first, runs, rows


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("--vehicles", type=int, default=200)
    args.add_argument("--days", type=int, default=30)
    args.add_argument("--interval", type=int, default=15, help="minutes between readings while awake")
    args.add_argument("--asleep-interval", type=int, default=15,
                      help="minutes between readings while asleep (default 15: a reading every 15 min all day)")
    args.add_argument("--repeats", type=int, default=20)
    args.add_argument("--data-dir", type=Path, help="simulate and build into DIR and keep it; when DIR already "
                      "has a warehouse, reuse it (nothing is simulated)")
    opts = args.parse_args()

    import duckdb

    from assets.marts.mileage.assets import create_mileage_macros, load_odometer, monthly_verification_sql
    from assets.marts.warehouse_io import replace_table, replace_table_from_frame

    def write_odometer_readings(con, assessed):
        return replace_table_from_frame(con, "odometer_readings", assessed.sort("vehicle_id", "reading_time"))

    def write_mileage_verification(con):
        create_mileage_macros(con)
        return replace_table(con, "mileage_verification", monthly_verification_sql())
    from assets.marts.mileage.odometer import assess_odometer
    from pipelines.build import build_everything
    from pipelines.definitions import build_definitions
    from storage.resources import LakeResource, WarehouseResource
    from pipelines.sources.simulator import SimulationConfig, simulate_fleet

    work = opts.data_dir or Path(tempfile.mkdtemp(prefix="fleetlake-bench-mileage-"))
    try:
        lake, warehouse = LakeResource(data_dir=str(work)), WarehouseResource(data_dir=str(work))
        if not warehouse.path.exists():
            config = SimulationConfig(vehicles=opts.vehicles, days=opts.days, interval_minutes=opts.interval,
                                      asleep_interval_minutes=opts.asleep_interval)
            summary, seconds = timed(simulate_fleet, config, work / "landing", work / "ground_truth")
            print(f"fleet: {opts.vehicles} vehicles × {opts.days} days, a reading every {opts.interval} min awake "
                  f"and {opts.asleep_interval} min asleep: {summary.lines:,} lines, simulated in {seconds:.0f} s")
            report, seconds = timed(build_everything, build_definitions({"lake": lake, "warehouse": warehouse}))
            if not report.ok:
                raise SystemExit(f"build failed: {report.failed_checks}")
            print(f"build (ingest, readings, every mart): {seconds:.0f} s")

        odometer, load_s = timed(load_odometer, lake)
        assessment, assess_s = timed(assess_odometer, odometer)
        with warehouse.connect() as con:
            _, write_s = timed(write_odometer_readings, con, assessment.readings)
            rows, verify_s = timed(write_mileage_verification, con)
            vehicle, first_day = con.sql("SELECT vehicle_id, min(day) FROM marts.odometer_readings "
                                         "GROUP BY vehicle_id ORDER BY count(*) DESC, vehicle_id LIMIT 1").fetchall()[0]
        print(f"odometer readings: {odometer.height:,} of {odometer['vehicle_id'].n_unique()} vehicles; "
              f"load {load_s:.2f} s, assess {assess_s:.2f} s, write {write_s:.2f} s")
        print(f"mileage_verification: {rows:,} vehicle-months, with the macros, in {verify_s:.2f} s")

        start = date(first_day.year, 1, 1)
        period = [vehicle, start, date(start.year, 12, 31)]
        with duckdb.connect(str(warehouse.path), read_only=True) as con:
            for macro in ("verified_mileage", "mileage_evidence"):
                first, runs, count = latencies(con, f"SELECT * FROM marts.{macro}(?, ?, ?)", period, opts.repeats)
                print(f"marts.{macro}('{vehicle}', {period[1]}, {period[2]}): {count:,} rows; first call "
                      f"{first * 1000:.1f} ms, median {statistics.median(runs) * 1000:.1f} ms, "
                      f"worst {max(runs) * 1000:.1f} ms over {opts.repeats} calls")
    finally:
        if not opts.data_dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
