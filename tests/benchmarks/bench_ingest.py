"""Benchmark: ingest + readings on a simulated fleet, against the design's anchor.

    uv run --locked python tests/benchmarks/bench_ingest.py [--vehicles 200 --days 30 --interval 15]

The anchor is one DuckDB statement that flattens the same landing files into Parquet (one
row per signal, no validation, no dedup, no quarantine). Each side runs in a fresh process
on the same landing files; the script prints throughput, peak memory (max RSS) and the ratio.
Run on demand: it is not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).parents[2]
sys.path.insert(0, str(REPO))


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_pipeline(data_dir: Path) -> dict:
    """ingest_job, then readings_job over every day, in this process (as `fleetlake run` does)."""
    import polars as pl

    from pipelines.build import RANGE_END_TAG, RANGE_START_TAG
    from pipelines.definitions import build_definitions
    from storage.resources import LakeResource, WarehouseResource
    from assets.readings import stale_days

    lake = LakeResource(data_dir=str(data_dir))
    defs = build_definitions({"lake": lake, "warehouse": WarehouseResource(data_dir=str(data_dir))})
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    started = time.perf_counter()
    defs.resolve_job_def("ingest_job").execute_in_process(run_config=quiet)
    ingested = time.perf_counter()
    days = stale_days(lake)
    defs.resolve_job_def("readings_job").execute_in_process(
        run_config=quiet, tags={RANGE_START_TAG: days[0].isoformat(), RANGE_END_TAG: days[-1].isoformat()})
    finished = time.perf_counter()
    deliveries = pl.scan_delta(str(lake.path("raw", "deliveries"))).select(pl.len()).collect().item()
    readings = pl.scan_delta(str(lake.path("readings"))).select(pl.len()).collect().item()
    return {"seconds": finished - started, "ingest_seconds": ingested - started,
            "readings_seconds": finished - ingested, "deliveries": deliveries, "rows": readings,
            "peak_rss_mib": peak_rss_mib()}


ANCHOR_SQL = """
COPY (
    SELECT json ->> '$.eventId' AS event_id,
           json ->> '$.data.vehicle.id' AS vehicle_id,
           signal ->> '$.code' AS code,
           CAST(signal -> '$.body' AS VARCHAR) AS body,
           signal ->> '$.meta.oemUpdatedAt' AS oem_updated_at
    FROM read_ndjson_objects($landing, ignore_errors = true) AS lines(json),
         unnest(json_extract(json, '$.data.signals[*]')) AS signals(signal)
) TO '{target}' (FORMAT parquet)
"""


def run_anchor(data_dir: Path) -> dict:
    import duckdb

    target = data_dir / "anchor.parquet"
    landing = [str(p) for p in sorted((data_dir / "landing").rglob("*.ndjson*"))]
    con = duckdb.connect()
    started = time.perf_counter()
    # The target is this script's own temporary file; the landing list is bound as a parameter.
    con.execute(ANCHOR_SQL.format(target=str(target).replace("'", "''")), {"landing": landing}).fetchall()
    seconds = time.perf_counter() - started
    rows = con.sql(f"SELECT count(*), count(DISTINCT event_id) FROM read_parquet('{target}')").fetchall()[0]
    return {"seconds": seconds, "rows": rows[0], "deliveries": rows[1], "peak_rss_mib": peak_rss_mib()}


def in_fresh_process(stage: str, data_dir: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--stage", stage, "--data-dir", str(data_dir)],
                         capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        raise SystemExit(f"{stage} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--vehicles", type=int, default=200)
    args.add_argument("--days", type=int, default=30)
    args.add_argument("--interval", type=int, default=15)
    args.add_argument("--stage", choices=["pipeline", "anchor"])
    args.add_argument("--data-dir", type=Path)
    opts = args.parse_args()
    if opts.stage:
        result = run_pipeline(opts.data_dir) if opts.stage == "pipeline" else run_anchor(opts.data_dir)
        print(json.dumps(result))
        return

    from pipelines.sources.simulator import SimulationConfig, simulate_fleet

    work = Path(tempfile.mkdtemp(prefix="fleetlake-bench-"))
    try:
        config = SimulationConfig(vehicles=opts.vehicles, days=opts.days, interval_minutes=opts.interval)
        started = time.perf_counter()
        summary = simulate_fleet(config, landing_dir=work / "landing", truth_dir=work / "ground_truth")
        size = sum(p.stat().st_size for p in (work / "landing").rglob("*"))
        print(f"fleet: {opts.vehicles} vehicles × {opts.days} days at {opts.interval} min: {summary.lines:,} lines "
              f"in {summary.files} files ({size / 2**20:.0f} MiB on disk), simulated in "
              f"{time.perf_counter() - started:.0f} s")
        anchor = in_fresh_process("anchor", work)
        pipeline = in_fresh_process("pipeline", work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def line(name: str, r: dict, unit: str) -> str:
        return (f"{name:<10} {r['seconds']:8.1f} s  {r['deliveries'] / r['seconds']:>10,.0f} deliveries/s  "
                f"{r['rows'] / r['seconds']:>11,.0f} {unit}/s  peak {r['peak_rss_mib']:,.0f} MiB")

    print(line("anchor", anchor, "signal rows"))
    print(line("pipeline", pipeline, "readings"))
    print(f"           (ingest {pipeline['ingest_seconds']:.1f} s, readings {pipeline['readings_seconds']:.1f} s; "
          f"{pipeline['rows']:,} readings from {pipeline['deliveries']:,} deliveries)")
    print(f"ratio pipeline/anchor: time {pipeline['seconds'] / anchor['seconds']:.1f}×, "
          f"peak memory {pipeline['peak_rss_mib'] / anchor['peak_rss_mib']:.1f}×")


if __name__ == "__main__":
    main()
