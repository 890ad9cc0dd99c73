"""Benchmark: the webhook receiver's sustained deliveries per second and latency, with
durable writes (every 200 follows an fsync of the delivery's line; group commit).

    uv run --locked python tests/benchmarks/bench_webhooks.py [--seconds 20 --connections 64]

Starts `fleetlake serve` (uvicorn) in a subprocess on a temporary data dir, drives it from
an asyncio load generator with keep-alive connections (each a client sending one signed
delivery at a time, as Smartcar does), and prints deliveries/s, p50/p99/max latency, and
checks that every acknowledged delivery is in landing. Run on demand: not part of the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from pipelines.sources.smartcar.receiver import signature_of  # noqa: E402

KEY = "bench-management-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def body(event_id: str, n: int) -> bytes:
    return json.dumps({
        "eventId": event_id, "eventType": "VEHICLE_STATE",
        "data": {"vehicle": {"id": f"veh-{n % 500}", "make": "TESLA", "model": "Model 3", "year": 2022},
                 "user": {"id": f"user-{n % 300}"},
                 "signals": [{"code": "odometer-traveleddistance", "name": "TraveledDistance", "group": "Odometer",
                              "body": {"value": 10000 + n / 10, "unit": "km"}, "status": {"value": "SUCCESS"},
                              "meta": {"oemUpdatedAt": 1788249600000 + n, "retrievedAt": 1788249601000 + n}},
                             {"code": "tractionbattery-stateofcharge", "name": "StateOfCharge",
                              "group": "TractionBattery", "body": {"value": 55, "unit": "percent"},
                              "status": {"value": "SUCCESS"},
                              "meta": {"oemUpdatedAt": 1788249600000 + n, "retrievedAt": 1788249601000 + n}}]},
        "triggers": [{"type": "SIGNAL_UPDATED", "signal": {"code": "odometer-traveleddistance"}}],
        "meta": {"version": "4.0", "deliveryId": f"d-{event_id}", "deliveredAt": 1788249602000 + n,
                 "webhookId": "wh-bench", "mode": "LIVE"},
    }, separators=(",", ":")).encode()


async def client(port: int, index: int, until: float, latencies: list[float], acked: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = 0
    while time.perf_counter() < until:
        event_id = f"c{index}-{n}"
        data = body(event_id, n)
        head = (f"POST /webhooks/smartcar HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                f"SC-Signature: {signature_of(KEY, data)}\r\nContent-Length: {len(data)}\r\n\r\n").encode()
        started = time.perf_counter()
        writer.write(head + data)
        headers = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line.split(b":", 1)[1] for line in headers.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - started)
        if headers.startswith(b"HTTP/1.1 200"):
            acked.append(event_id)
        n += 1
    writer.close()


async def drive(port: int, seconds: float, connections: int) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []
    acked: list[str] = []
    started = time.perf_counter()
    until = started + seconds
    await asyncio.gather(*(client(port, i, until, latencies, acked) for i in range(connections)))
    return latencies, acked, time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux), to separate our cost from a busy machine's."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    port = free_port()
    env = {**os.environ, "FLEETLAKE_DATA_DIR": str(data_dir), "SMARTCAR_MANAGEMENT_TOKEN": KEY}
    server = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "serve", "--port", str(port)], cwd=REPO,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        asyncio.run(drive(port, 2, args.connections))  # warm-up
        cpu_before = cpu_seconds(server.pid)
        latencies, acked, elapsed = asyncio.run(drive(port, args.seconds, args.connections))
        server_cpu = cpu_seconds(server.pid) - cpu_before
    finally:
        server.terminate()
        server.wait(timeout=30)
    latencies.sort()
    landed = set()
    for f in (data_dir / "landing").rglob("*.ndjson"):
        if ".in-progress" not in f.parts:
            landed.update(json.loads(line)["eventId"] for line in f.read_text().splitlines())
    missing = [e for e in acked if e not in landed]
    pct = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    print(f"webhook receiver, {os.cpu_count()} cores, {args.connections} keep-alive connections, "
          f"{args.seconds:g} s, durable (fsync before every 200, group commit)")
    print(f"  {len(acked):,} deliveries acknowledged: {len(acked) / elapsed:,.0f}/s; latency p50 {pct(0.5):.1f} ms, "
          f"p99 {pct(0.99):.1f} ms, max {latencies[-1] * 1000:.1f} ms")
    per = server_cpu / max(1, len(acked))
    print(f"  receiver CPU: {per * 1e6:.0f} µs per delivery, {server_cpu / elapsed * 100:.0f} % of one core "
          f"used (≈ {1 / per if per else 0:,.0f} deliveries/s per core with no other load); "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"  in landing after shutdown: {len(landed):,}; acknowledged but missing: {len(missing)}")


if __name__ == "__main__":
    main()
