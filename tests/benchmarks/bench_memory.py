"""Benchmark: peak resident memory per stage as days are added, against the anchor.

    uv run --locked python tests/benchmarks/bench_memory.py [--vehicles 1000 --days-list 10 30 60] [--without-anchor]
        [--memory-limit 512MB]

For each number of days, simulates the issue's fleet (a delivery every 15 minutes for every
vehicle), then runs the anchor (one DuckDB statement flattening landing into Parquet) and a
full build (`fleetlake run`'s three jobs), each in a fresh process. Prints the peak RSS of
every stage (sampled every 50 ms) and of each process as a whole, with the time and the load
average. Bounded memory shows as peaks that stay flat while the days grow. Run on demand:
it is not part of the test suite.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2]))

from tests.benchmarks.bench_end_to_end import fleet_arguments, in_fresh_process, landing_size, load, simulate  # noqa: E402


def main() -> None:
    args = fleet_arguments(vehicles=1000)
    args.set_defaults(days=None)
    args.add_argument("--days-list", type=int, nargs="+", default=[10, 30, 60])
    # the anchor's one statement needs more than 24 GiB from about 200 vehicles × 30 days
    args.add_argument("--without-anchor", action="store_true", help="run the pipeline alone")
    opts = args.parse_args()
    runs = {}
    for days in ([opts.days] if opts.days else opts.days_list):
        work = Path(tempfile.mkdtemp(prefix="fleetlake-bench-memory-"))
        try:
            simulate(work / "landing", opts.vehicles, days, opts.interval)
            print(f"{opts.vehicles} vehicles × {days} days: {landing_size(work / 'landing')}; {load()}", flush=True)
            anchor = None if opts.without_anchor else in_fresh_process("anchor", work)
            runs[days] = (anchor, in_fresh_process("pipeline", work, opts.memory_limit))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        anchor, pipeline = runs[days]
        print((f"  anchor {anchor['seconds']:.1f} s peak {anchor['peak_rss_mib']:,.0f} MiB; " if anchor else "  ")
              + f"pipeline {pipeline['seconds']:.1f} s peak {pipeline['peak_rss_mib']:,.0f} MiB "
              f"(load {pipeline['load_average']:.1f})", flush=True)

    names = list(dict.fromkeys(n for _, p in runs.values() for n, _, _ in p["stages"]))
    print(f"peak RSS (MiB) by stage, {opts.vehicles} vehicles at {opts.interval} min:")
    print(f"  {'stage':<44}" + "".join(f"{f'{d} days':>12}" for d in runs))
    if not opts.without_anchor:
        print(f"  {'anchor (whole process)':<44}" + "".join(f"{a['peak_rss_mib']:12,.0f}" for a, _ in runs.values()))
    print(f"  {'pipeline (whole process)':<44}" + "".join(f"{p['peak_rss_mib']:12,.0f}" for _, p in runs.values()))
    for name in names:
        peaks = [{n: peak for n, _, peak in p["stages"]}.get(name) for _, p in runs.values()]
        print(f"  {name:<44}" + "".join(f"{x:12,.0f}" if x is not None else f"{'-':>12}" for x in peaks))
    print(load())


if __name__ == "__main__":
    main()
