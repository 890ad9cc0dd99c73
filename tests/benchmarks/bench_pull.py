"""Benchmark: one pull round of a 1,000-vehicle fleet against the Smartcar double.

    uv run --locked python tests/benchmarks/bench_pull.py [--vehicles 1000 --latency-ms 0 --in-flight 8]

Rounds on fresh data dirs: with Smartcar's default application bucket (120 requests,
2 a minute), which shows what the pull does when the fleet is larger than the bucket, and
with a bucket large enough for the whole fleet, which shows the round's own speed, read one
vehicle at a time and `--in-flight` at a time. Prints requests, vehicles pulled and
deferred, wall time, the most requests the double served at once, and lines landed. Run
on demand.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from smartcar_double import CLIENT_ID, CLIENT_SECRET, SmartcarDouble  # noqa: E402

from pipelines.sources.smartcar.client import Credentials, SmartcarClient  # noqa: E402
from pipelines.sources.smartcar.limits import Limits, RequestBucket  # noqa: E402
from pipelines.sources.smartcar.pull import pull_round  # noqa: E402
from storage.layout import SmartcarLayout  # noqa: E402
from storage.resources import LakeResource  # noqa: E402


def one_round(vehicles: int, capacity: float, latency_s: float, in_flight: int) -> float:
    data_dir = Path(tempfile.mkdtemp(prefix="bench-pull-"))
    with SmartcarDouble(vehicles=vehicles, page_size=100, bucket_capacity=capacity, latency_s=latency_s) as double:
        client = SmartcarClient(Credentials(CLIENT_ID, CLIENT_SECRET), iam_origin=double.origin,
                                vehicle_api_origin=double.origin)
        lake = LakeResource(data_dir=str(data_dir))
        started = time.perf_counter()
        report = pull_round(client, lake.landing, SmartcarLayout(lake), Limits(min_interval=timedelta(minutes=30), max_in_flight=in_flight),
                            RequestBucket(capacity=capacity, level=capacity))
        elapsed = time.perf_counter() - started
        lines = sum(len(f.read_text().splitlines()) for f in report.files)
    print(f"bucket {capacity:,.0f}, {in_flight} in flight (the double saw at most {double.max_in_flight}): "
          f"{report.requests} requests in {elapsed:.2f} s "
          f"({report.requests / elapsed:,.0f}/s); {len(report.pulled)} pulled, {len(report.deferred)} deferred; "
          f"{lines} lines in {len(report.files)} landing files; refused by the double: {double.bucket_refusals}")
    for line in report.lines()[:4]:
        print("   ", line)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vehicles", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="the double's delay per request")
    parser.add_argument("--in-flight", type=int, default=Limits.max_in_flight)
    args = parser.parse_args()
    print(f"pull round, {args.vehicles} connected vehicles, the double's latency {args.latency_ms:g} ms; "
          f"load average {os.getloadavg()[0]:.2f}")
    one_round(args.vehicles, 120, args.latency_ms / 1000, args.in_flight)
    sequential = one_round(args.vehicles, args.vehicles + 100, args.latency_ms / 1000, 1)
    concurrent = one_round(args.vehicles, args.vehicles + 100, args.latency_ms / 1000, args.in_flight)
    print(f"{args.in_flight} in flight: {sequential / concurrent:.1f}× faster than one at a time; "
          f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
