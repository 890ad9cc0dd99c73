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
from collections import deque
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
    """One keep-alive connection: sends a delivery, waits for the whole answer, asks the load
    for the next one."""

    def __init__(self, index: int, load: Load):
        self.prefix, self.load = b"c%d-" % index, load
        self.n = 0
        self.buffer = b""

    def connection_made(self, transport):
        self.transport = transport
        self.load.ready(self)

    def send(self, scheduled: float) -> None:
        """Send the next delivery; its latency counts from `scheduled` (when it was due)."""
        self.event_id = self.prefix + b"%d" % self.n
        self.n += 1
        data = self.load.template[0] + self.event_id + self.load.template[1]
        signature = hmac.digest(KEY, data, hashlib.sha256).hex().encode()
        self.scheduled = scheduled
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
        self.load.answered(self, int(head[9:12]), time.perf_counter() - self.scheduled)

    def connection_lost(self, exc) -> None:
        self.load.lost(self)


class Load:
    """The deliveries offered to the receiver: at `rate` per second (open loop, as Smartcar
    sends them: a delivery that finds no free connection waits, and its wait counts in its
    latency), or with `rate` 0 as fast as the connections go (closed loop)."""

    def __init__(self, rate: float, seconds: float, connections: int):
        self.rate, self.seconds, self.connections = rate, seconds, connections
        self.template = body_template()
        self.latencies: list[float] = []
        self.acked: list[bytes] = []
        self.statuses: dict[int, int] = {}
        self.idle: deque[Client] = deque()  # first in, first out: every connection stays in use (uvicorn
        # closes one idle for 5 s)
        self.backlog: deque[float] = deque()
        self.until = 0.0
        self.closed = 0
        self.finished = False
        self.drained: asyncio.Future | None = None

    def ready(self, client: Client) -> None:
        self.idle.append(client)

    def lost(self, client: Client) -> None:
        """The server closed a connection (or the run ended): it carries no more deliveries."""
        if self.finished:
            return
        if client in self.idle:
            self.idle.remove(client)
        self.connections -= 1
        self.closed += 1
        if self.until and time.perf_counter() >= self.until and len(self.idle) == self.connections \
                and not self.drained.done():
            self.drained.set_result(None)

    def answered(self, client: Client, status: int, latency: float) -> None:
        self.latencies.append(latency)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == 200:
            self.acked.append(client.event_id)
        now = time.perf_counter()
        if self.backlog:
            client.send(self.backlog.popleft())
        elif self.rate == 0 and now < self.until:
            client.send(now)
        else:
            self.idle.append(client)
            if now >= self.until and len(self.idle) == self.connections and not self.drained.done():
                self.drained.set_result(None)

    async def run(self, port: int) -> float:
        loop = asyncio.get_running_loop()
        self.drained = loop.create_future()
        clients = [(await loop.create_connection(lambda i=i: Client(i, self), "127.0.0.1", port))[1]
                   for i in range(self.connections)]
        started = time.perf_counter()
        self.until = started + self.seconds
        if self.rate == 0:
            while self.idle:
                self.idle.pop().send(started)
        else:
            offered = 0
            while (now := time.perf_counter()) < self.until:
                for _ in range(offered, int((now - started) * self.rate)):
                    due = started + offered / self.rate
                    offered += 1
                    if self.idle:
                        self.idle.popleft().send(due)
                    else:
                        self.backlog.append(due)
                await asyncio.sleep(0.001)  # the loop's timer resolution (libuv: 1 ms)
            if len(self.idle) == self.connections and not self.backlog and not self.drained.done():
                self.drained.set_result(None)
        await self.drained
        elapsed = time.perf_counter() - started
        self.finished = True
        for client in clients:
            client.transport.close()
        return elapsed


def run(coroutine):
    try:
        import uvloop

        return uvloop.run(coroutine)
    except ImportError:
        return asyncio.run(coroutine)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU time of a process (Linux, all its threads), to separate our cost
    from a busy machine's."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / os.sysconf("SC_CLK_TCK"), int(fields[12]) / os.sysconf("SC_CLK_TCK")


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
    parser.add_argument("--rate", type=float, default=2000, help="deliveries offered per second (0: as fast as "
                        "the connections go)")
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
        run(Load(args.rate, 2, args.connections).run(port))  # warm-up
        server_before, client_before = cpu_seconds(server.pid), own_cpu_seconds()
        load = Load(args.rate, args.seconds, args.connections)
        elapsed = run(load.run(port))
        latencies, acked, statuses = load.latencies, load.acked, load.statuses
        server_user, server_system = (after - before for after, before in zip(cpu_seconds(server.pid), server_before))
        server_cpu, client_cpu = server_user + server_system, own_cpu_seconds() - client_before
        load_after = os.getloadavg()
    finally:
        server.send_signal(2)  # SIGINT: uvicorn shuts down, publishes the open file (and cProfile writes)
        server.wait(timeout=60)
    landed = landed_event_ids(data_dir / "landing")
    verified = sum(1 for e in acked if e in landed)
    latencies.sort()
    pct = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    offered = f"{args.rate:,.0f} deliveries/s offered" if args.rate else "closed loop (each sends on its answer)"
    print(f"webhook receiver, {os.cpu_count()} cores, {args.connections} keep-alive connections, {offered}, "
          f"{args.seconds:g} s, durable (fsync before every 200, group commit){', under cProfile' if args.profile else ''}")
    print(f"  load average before {load_before[0]:.2f} (5 min {load_before[1]:.2f}), after {load_after[0]:.2f}")
    print(f"  {verified:,} deliveries acknowledged and in landing: {verified / elapsed:,.0f}/s; latency p50 "
          f"{pct(0.5):.1f} ms, p99 {pct(0.99):.1f} ms, max {latencies[-1] * 1000:.1f} ms; answers {statuses}; "
          f"connections closed by the receiver: {load.closed}")
    per = server_cpu / max(1, verified)
    print(f"  receiver CPU: {per * 1e6:.0f} µs per delivery, {server_cpu / elapsed * 100:.0f} % of one core "
          f"({server_system / max(server_cpu, 1e-9) * 100:.0f} % of it in the kernel; ≈ {1 / per if per else 0:,.0f} "
          f"deliveries/s per free core); load generator CPU: "
          f"{client_cpu / max(1, len(latencies)) * 1e6:.0f} µs per request, {client_cpu / elapsed * 100:.0f} % of one core")
    print(f"  in landing after shutdown: {len(landed):,}; acknowledged but missing: {len(acked) - verified}")
    if args.profile:
        pstats.Stats(args.profile).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
