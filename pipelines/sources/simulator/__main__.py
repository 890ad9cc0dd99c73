"""``python -m pipelines.sources.simulator --vehicles 50 --days 30 --out data`` (for manual runs)."""
from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path

from . import SimulationConfig, simulate_fleet


def main(argv=None) -> int:
    d = SimulationConfig()
    ap = argparse.ArgumentParser(prog="python -m pipelines.sources.simulator", description=__doc__)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--vehicles", type=int, default=d.vehicles)
    ap.add_argument("--days", type=int, default=d.days)
    ap.add_argument("--start", type=date.fromisoformat, default=d.start)
    ap.add_argument("--interval-minutes", type=int, default=d.interval_minutes)
    ap.add_argument("--asleep-interval-minutes", type=int, default=None)
    ap.add_argument("--no-faults", action="store_true")
    ap.add_argument("--landing-dir", type=Path, default=Path("data/landing"))
    ap.add_argument("--truth-dir", type=Path, default=Path("data/truth"))
    a = ap.parse_args(argv)
    cfg = SimulationConfig(seed=a.seed, vehicles=a.vehicles, days=a.days, start=a.start,
                           interval_minutes=a.interval_minutes, faults=not a.no_faults,
                           asleep_interval_minutes=a.asleep_interval_minutes)
    t = time.perf_counter()
    s = simulate_fleet(cfg, landing_dir=a.landing_dir, truth_dir=a.truth_dir)
    print(json.dumps(s.to_dict(), indent=2))
    print(f"elapsed_s: {time.perf_counter() - t:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
