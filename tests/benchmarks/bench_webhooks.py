"""Benchmark: the webhook receiver's sustained deliveries per second and latency, with
durable writes (every 200 follows an fsync of the file that holds the delivery).

    uv run --locked python tests/benchmarks/bench_webhooks.py [--seconds 20 --connections 64]
        [--profile receiver.prof]

Starts `fleetlake serve` (uvicorn) in a subprocess on a temporary data dir and drives it
with keep-alive connections, each a client that sends one signed delivery at a time, as
Smartcar does. The load generator shares the machine's cores with the receiver, so it is
kept cheap: raw asyncio protocols (uvloop when installed), a request built from a template
with one C-level HMAC, no HTTP library. It prints deliveries/s, p50/p99/max latency, the
CPU that the receiver and the load generator each used, and the load average before and
after; only 200s whose delivery is in landing after shutdown count. `--profile` runs the
receiver under cProfile and prints where its time went. Run on demand: not in the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import pstats
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).parents[2]
KEY = b"bench-management-token"


PROFILED_SERVE = """
import cProfile, sys, time
from pipelines.cli import main
profile = cProfile.Profile(time.process_time)
try:
    profile.runcall(main, sys.argv[2:])
finally:
    profile.dump_stats(sys.argv[1])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def body_template() -> tuple[bytes, bytes]:
    """A realistic delivery (two signals, ~900 bytes) split around its eventId, so a request
    costs a concatenation rather than a json.dumps."""
    event = {
        "eventId": "@ID@", "eventType": "VEHICLE_STATE",
        "data": {"vehicle": {"id": "veh-0042", "make": "TESLA", "model": "Model 3", "year": 2022},
                 "user": {"id": "user-0042"},
                 "signals": [{"code": "odometer-traveleddistance", "name": "TraveledDistance", "group": "Odometer",
                              "body": {"value": 10042.5, "unit": "km"}, "status": {"value": "SUCCESS"},
                              "meta": {"oemUpdatedAt": 1788249600000, "retrievedAt": 1788249601000}},
                             {"code": "tractionbattery-stateofcharge", "name": "StateOfCharge",
                              "group": "TractionBattery", "body": {"value": 55, "unit": "percent"},
                              "status": {"value": "SUCCESS"},
                              "meta": {"oemUpdatedAt": 1788249600000, "retrievedAt": 1788249601000}}]},
        "triggers": [{"type": "SIGNAL_UPDATED", "signal": {"code": "odometer-traveleddistance"}}],
        "meta": {"version": "4.0", "deliveryId": "d-bench", "deliveredAt": 1788249602000,
                 "webhookId": "wh-bench", "mode": "LIVE"},
    }
    before, after = json.dumps(event, separators=(",", ":")).encode().split(b"@ID@")
    return before, after


class Client(asyncio.Protocol):
    """One keep-alive connection: sends a delivery, waits for the whole answer, sends the next."""

    def __init__(self, index: int, until: float, template: tuple[bytes, bytes], latencies: list[float],
                 acked: list[bytes], statuses: dict[bytes, int], done: asyncio.Future):
        self.prefix = b"c%d-" % index
        self.until, self.template = until, template
        self.latencies, self.acked, self.statuses, self.done = latencies, acked, statuses, done
        self.n = 0
        self.buffer = b""

    def connection_made(self, transport):
        self.transport = transport
        self.send()

    def send(self) -> None:
        self.event_id = self.prefix + b"%d" % self.n
        self.n += 1
        data = self.template[0] + self.event_id + self.template[1]
        signature = hmac.digest(KEY, data, hashlib.sha256).hex().encode()
        self.started = time.perf_counter()
        self.transport.write(b"POST /webhooks/smartcar HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
                             b"sc-signature: " + signature + b"\r\ncontent-length: %d\r\n\r\n" % len(data) + data)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].lower()
        at = head.find(b"content-length:")
        length = int(head[at + 15:].split(b"\r\n", 1)[0]) if at >= 0 else 0
        if len(self.buffer) < end + 4 + length:
            return
        self.buffer = self.buffer[end + 4 + length:]
        now = time.perf_counter()
        self.latencies.append(now - self.started)
        status = int(head[9:12])
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == 200:
            self.acked.append(self.event_id)
        if now < self.until:
            self.send()
        else:
            self.transport.close()

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def drive(port: int, seconds: float, connections: int):
    loop = asyncio.get_running_loop()
    template = body_template()
    latencies: list[float] = []
    acked: list[bytes] = []
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    until = started + seconds
    finished = []
    for i in range(connections):
        done = loop.create_future()
        await loop.create_connection(lambda i=i, done=done: Client(i, until, template, latencies, acked, statuses,
                                                                    done), "127.0.0.1", port)
        finished.append(done)
    await asyncio.gather(*finished)
    return latencies, acked, statuses, time.perf_counter() - started


def run(coroutine):
    try:
        import uvloop

        return uvloop.run(coroutine)
    except ImportError:
        return asyncio.run(coroutine)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux), to separate our cost from a busy machine's."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def landed_event_ids(landing: Path) -> set[bytes]:
    """The eventIds in published landing files (as ingest sees them), each line whole JSON."""
    ids = set()
    for f in landing.rglob("*.ndjson"):
        if not any(p.startswith(".") for p in f.relative_to(landing).parts):
            ids.update(json.loads(line)["eventId"].encode() for line in f.read_bytes().splitlines())
    return ids


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--profile", help="run the receiver under cProfile, write its profile here and print it")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    port = free_port()
    env = {**os.environ, "FLEETLAKE_DATA_DIR": str(data_dir), "SMARTCAR_MANAGEMENT_TOKEN": KEY.decode()}
    serve = ["-m", "pipelines.cli", "serve", "--port", str(port)]
    if args.profile:  # CPU time, not wall time: on a shared machine wall time counts other jobs' turns
        serve = ["-c", PROFILED_SERVE, str(Path(args.profile).resolve()), "serve", "--port", str(port)]
    server = subprocess.Popen([sys.executable, *serve], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    load_before = os.getloadavg()
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        run(drive(port, 2, args.connections))  # warm-up
        server_before, client_before = cpu_seconds(server.pid), own_cpu_seconds()
        latencies, acked, statuses, elapsed = run(drive(port, args.seconds, args.connections))
        server_cpu, client_cpu = cpu_seconds(server.pid) - server_before, own_cpu_seconds() - client_before
        load_after = os.getloadavg()
    finally:
        server.send_signal(2)  # SIGINT: uvicorn shuts down, publishes the open file (and cProfile writes)
        server.wait(timeout=60)
    landed = landed_event_ids(data_dir / "landing")
    verified = sum(1 for e in acked if e in landed)
    latencies.sort()
    pct = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    print(f"webhook receiver, {os.cpu_count()} cores, {args.connections} keep-alive connections, "
          f"{args.seconds:g} s, durable (fsync before every 200, group commit){', under cProfile' if args.profile else ''}")
    print(f"  load average before {load_before[0]:.2f} (5 min {load_before[1]:.2f}), after {load_after[0]:.2f}")
    print(f"  {verified:,} deliveries acknowledged and in landing: {verified / elapsed:,.0f}/s; latency p50 "
          f"{pct(0.5):.1f} ms, p99 {pct(0.99):.1f} ms, max {latencies[-1] * 1000:.1f} ms; answers {statuses}")
    per = server_cpu / max(1, verified)
    print(f"  receiver CPU: {per * 1e6:.0f} µs per delivery, {server_cpu / elapsed * 100:.0f} % of one core "
          f"(≈ {1 / per if per else 0:,.0f} deliveries/s per free core); load generator CPU: "
          f"{client_cpu / max(1, len(latencies)) * 1e6:.0f} µs per request, {client_cpu / elapsed * 100:.0f} % of one core")
    print(f"  in landing after shutdown: {len(landed):,}; acknowledged but missing: {len(acked) - verified}")
    if args.profile:
        pstats.Stats(args.profile).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
