"""Benchmark: one more day of landing after a month is built, against the full build.

    uv run --locked python tests/benchmarks/bench_incremental.py [--vehicles 200 --days 30]

Simulates `days + 1` days of the issue's fleet (a delivery every 15 minutes for every
vehicle), lands the first `days`, builds everything (a full build: a new lake and
warehouse), then lands the last day and builds again (the incremental build: one day of
ingest and readings, marts for the vehicles with new data). Each build runs in a fresh
process, as `fleetlake run` would; the anchor (one DuckDB statement flattening landing into
Parquet) runs on all the files and on the new day's alone. Prints both builds per stage,
their ratio in wall time (with and without process start-up) and CPU time, and the load
average. Run on demand: it is not part of the test suite.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2]))

from tests.benchmarks.bench_end_to_end import fleet_arguments, in_fresh_process, landing_size, load, simulate  # noqa: E402


def move_day(source: Path, landing: Path, day_folder: str) -> None:
    """Land a day's files (the simulator files each UTC day under landing/YYYY/MM/DD/)."""
    for path in sorted((source / day_folder).rglob("*.ndjson*")):
        target = landing / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)


def main() -> None:
    opts = fleet_arguments().parse_args()
    work = Path(tempfile.mkdtemp(prefix="fleetlake-bench-incremental-"))
    staged, landing = work / "staged" / "landing", work / "build" / "landing"
    new_day = work / "new_day"
    try:
        simulate(staged, opts.vehicles, opts.days + 1, opts.interval)
        days = sorted({p.relative_to(staged).parent.as_posix() for p in staged.rglob("*.ndjson*")})
        last = days[-1]
        for day in days[:-1]:
            move_day(staged, landing, day)
        print(f"first {len(days) - 1} days: {landing_size(landing)}; {load()}")
        anchor_full = in_fresh_process("anchor", landing.parent)
        full = in_fresh_process("pipeline", landing.parent)
        shutil.copytree(staged / last, new_day / "landing" / last)
        anchor_day = in_fresh_process("anchor", new_day)
        move_day(staged, landing, last)
        print(f"one more day ({last}): {landing_size(new_day / 'landing')}; {load()}")
        more = in_fresh_process("pipeline", landing.parent)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"anchor, first days: {anchor_full['seconds']:.1f} s; anchor, the new day alone: {anchor_day['seconds']:.1f} s")
    stages = dict.fromkeys([n for n, _, _ in full["stages"]] + [n for n, _, _ in more["stages"]])
    full_by, more_by = ({n: (s, p) for n, s, p in r["stages"]} for r in (full, more))
    print(f"{'stage':<46} {'full':>9} {'one more day':>13}")
    for name in stages:
        a, b = full_by.get(name, (0.0, 0.0)), more_by.get(name, (0.0, 0.0))
        print(f"  {name:<44} {a[0]:7.1f} s {b[0]:10.1f} s   peak {a[1]:6,.0f} / {b[1]:6,.0f} MiB")
    startup = lambda r: r["stages"][0][1]  # noqa: E731
    print(f"full build {full['seconds']:.1f} s (cpu {full['cpu_seconds']:.1f} s, load {full['load_average']:.1f}); "
          f"one more day {more['seconds']:.1f} s (cpu {more['cpu_seconds']:.1f} s, load {more['load_average']:.1f})")
    print(f"ratio one more day / full: wall {more['seconds'] / full['seconds']:.3f} "
          f"(1/{full['seconds'] / more['seconds']:.1f}), without start-up "
          f"{(more['seconds'] - startup(more)) / (full['seconds'] - startup(full)):.3f} "
          f"(1/{(full['seconds'] - startup(full)) / (more['seconds'] - startup(more)):.1f}), "
          f"cpu {more['cpu_seconds'] / full['cpu_seconds']:.3f}")
    print(load())


if __name__ == "__main__":
    main()
