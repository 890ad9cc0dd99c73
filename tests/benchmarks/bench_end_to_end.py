"""Benchmark: landing to every mart, as `fleetlake run` does it, against the design's anchor.

    uv run --locked python tests/benchmarks/bench_end_to_end.py [--vehicles 200 --days 30]
    uv run --locked python tests/benchmarks/bench_end_to_end.py --landing DIR   # a fleet already landed

The fleet is the issue's: a delivery every 15 minutes for every vehicle, awake or not
(`asleep_interval_minutes=15`). The anchor is bench_ingest's one DuckDB statement. Each side
runs in a fresh process on the same landing files. The pipeline's per-step times come from
Dagster's event log (step start to step end); a sampler thread records resident memory, so
each step also gets its own peak. Prints time, rows per second, peak memory and the ratios.
Run on demand: it is not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).parents[2]
sys.path.insert(0, str(REPO))

from tests.benchmarks.bench_ingest import peak_rss_mib, run_anchor  # noqa: E402

PAGE_MIB = 4096 / 2**20


class RssSampler(threading.Thread):
    """Resident memory of this process every 50 ms, with the wall-clock time of each sample."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float]] = []
        self.running = True

    def run(self) -> None:
        while self.running:
            with open("/proc/self/statm") as f:
                self.samples.append((time.time(), int(f.read().split()[1]) * PAGE_MIB))
            time.sleep(0.05)

    def peak(self, start: float, end: float) -> float:
        return max((rss for t, rss in self.samples if start <= t <= end), default=0.0)


def step_windows(instance, run_id: str) -> list[tuple[str, float, float]]:
    """(step, started, ended) of every step of a run, from its event log."""
    starts, windows = {}, []
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not event.step_key:
            continue
        if event.event_type_value == "STEP_START":
            starts[event.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in starts:
            windows.append((event.step_key, starts[event.step_key], entry.timestamp))
    return windows


def run_pipeline(data_dir: Path, process_started: float, memory_limit: str | None = None) -> dict:
    """A build as `fleetlake run` does it (`pipelines.build.build_everything`), in this process."""
    sampler = RssSampler()
    sampler.start()
    import dagster as dg
    import duckdb

    from pipelines.build import build_everything
    from pipelines.definitions import build_definitions
    from storage.resources import LakeResource, WarehouseResource

    lake = LakeResource(data_dir=str(data_dir))
    warehouse = WarehouseResource(data_dir=str(data_dir), **({"memory_limit": memory_limit} if memory_limit else {}))
    defs = build_definitions({"lake": lake, "warehouse": warehouse})
    instance = dg.DagsterInstance.ephemeral()
    started = time.time()
    stages = [("start-up", process_started, started)]
    report = build_everything(defs, instance)
    if not report.ok:
        raise SystemExit(f"the build failed: {report.errors or report.failed_checks}")
    for record in sorted(instance.get_run_records(), key=lambda r: r.start_time):
        stages.append((record.dagster_run.job_name, record.start_time, record.end_time))
        stages.extend((f"  {step}", a, b) for step, a, b in step_windows(instance, record.dagster_run.run_id))
    finished = time.time()
    sampler.running = False
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        counts = con.sql("SELECT (SELECT count(*) FROM marts.pipeline_health), "
                         "(SELECT sum(deliveries_parsed) FROM marts.pipeline_health), "
                         "(SELECT sum(readings) FROM marts.pipeline_health)").fetchall()[0]
    return {"seconds": finished - process_started, "deliveries": counts[1], "rows": counts[2],
            "peak_rss_mib": peak_rss_mib(), "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "load_average": os.getloadavg()[0],
            "stages": [(name, b - a, sampler.peak(a, b)) for name, a, b in stages]}


def in_fresh_process(stage: str, data_dir: Path, memory_limit: str | None = None) -> dict:
    """One side of the benchmark (`pipeline` or `anchor`) on `data_dir`'s landing, in a
    fresh process (the pipeline's DuckDB capped at `memory_limit`, else the warehouse's
    default); its result."""
    out = subprocess.run([sys.executable, __file__, "--stage", stage, "--data-dir", str(data_dir),
                          "--started", str(time.time()), *(["--memory-limit", memory_limit] if memory_limit else [])],
                         capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        raise SystemExit(f"{stage} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def fleet_arguments(vehicles: int = 200, days: int = 30) -> argparse.ArgumentParser:
    """The options every end-to-end benchmark takes: the fleet, and the stage a fresh process runs."""
    args = argparse.ArgumentParser()
    args.add_argument("--vehicles", type=int, default=vehicles)
    args.add_argument("--days", type=int, default=days)
    args.add_argument("--interval", type=int, default=15)
    args.add_argument("--memory-limit", help="DuckDB's memory limit on the warehouse (default: the warehouse's)")
    args.add_argument("--stage", choices=["pipeline", "anchor"], help=argparse.SUPPRESS)
    args.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args.add_argument("--started", type=float, help=argparse.SUPPRESS)
    return args


def simulate(landing: Path, vehicles: int, days: int, interval: int) -> None:
    """The issue's fleet: a delivery every `interval` minutes for every vehicle, awake or not."""
    from pipelines.sources.simulator import SimulationConfig, simulate_fleet

    config = SimulationConfig(vehicles=vehicles, days=days, interval_minutes=interval,
                              asleep_interval_minutes=interval)
    simulate_fleet(config, landing_dir=landing, truth_dir=landing.parent / "ground_truth")


def landing_size(landing: Path) -> str:
    files = list(landing.rglob("*.ndjson*"))
    return f"{len(files)} landing files, {sum(p.stat().st_size for p in files) / 2**20:,.0f} MiB"


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def print_side_by_side(anchor: dict, pipeline: dict) -> None:
    for name, r, unit in (("anchor", anchor, "signal rows"), ("pipeline", pipeline, "readings")):
        print(f"{name:<10} {r['seconds']:8.1f} s  {r['deliveries'] / r['seconds']:>10,.0f} deliveries/s  "
              f"{r['rows'] / r['seconds']:>11,.0f} {unit}/s  peak {r['peak_rss_mib']:,.0f} MiB"
              + (f"  cpu {r['cpu_seconds']:.1f} s" if "cpu_seconds" in r else ""))
    for name, seconds, peak in pipeline["stages"]:
        print(f"  {name:<44} {seconds:7.1f} s  peak {peak:7,.0f} MiB")
    ingest_readings = sum(s for n, s, _ in pipeline["stages"] if n in ("ingest_job", "readings_job"))
    print(f"ratio pipeline/anchor: end to end {pipeline['seconds'] / anchor['seconds']:.1f}×, "
          f"ingest + readings {ingest_readings / anchor['seconds']:.1f}×, "
          f"peak memory {pipeline['peak_rss_mib'] / anchor['peak_rss_mib']:.1f}×")


def run_stage(opts) -> bool:
    """In a process started by `in_fresh_process`: run its stage, print the result; False otherwise."""
    if not opts.stage:
        return False
    result = (run_pipeline(opts.data_dir, opts.started, opts.memory_limit) if opts.stage == "pipeline"
              else run_anchor(opts.data_dir))
    print(json.dumps(result))
    return True


def main() -> None:
    args = fleet_arguments()
    args.add_argument("--landing", type=Path, help="use the fleet already landed in this directory")
    opts = args.parse_args()
    if run_stage(opts):
        return
    work = Path(tempfile.mkdtemp(prefix="fleetlake-bench-"))
    try:
        if opts.landing:
            shutil.copytree(opts.landing, work / "landing")
        else:
            simulate(work / "landing", opts.vehicles, opts.days, opts.interval)
        print(f"fleet: {landing_size(work / 'landing')}; {load()}")
        anchor = in_fresh_process("anchor", work)
        pipeline = in_fresh_process("pipeline", work, opts.memory_limit)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_side_by_side(anchor, pipeline)
    print(load())


if __name__ == "__main__":
    main()
