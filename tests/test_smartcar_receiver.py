"""The webhook receiver over real HTTP: `fleetlake serve` in a subprocess (uvicorn)."""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from smartcar import hash_challenge
from smartcar_double import MANAGEMENT_TOKEN

from pipelines.sources.landing_writer import IN_PROGRESS_DIR, RollingLandingFile
from pipelines.sources.smartcar.receiver import MAX_BODY_BYTES, signature_of
from storage.layout import landing_files as _all_landing_files

REPO = Path(__file__).parents[1]


def landing_files(landing: Path) -> list[Path]:
    """Published landing files: not in a dot-folder such as `.in-progress/` (the contract)."""
    return [f for f in _all_landing_files(landing) if not any(p.startswith(".") for p in f.relative_to(landing).parts)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    def __init__(self, data_dir: Path):
        self.data_dir, self.port = data_dir, free_port()
        env = {**os.environ, "FLEETLAKE_DATA_DIR": str(data_dir), "SMARTCAR_MANAGEMENT_TOKEN": MANAGEMENT_TOKEN}
        self.log = open(data_dir / f"serve-{self.port}.log", "w")
        self.process = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "serve", "--port", str(self.port)],
                                        cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the receiver did not start")

    def request(self, method: str, path: str, body: bytes = b"", headers: dict | None = None,
                connection: http.client.HTTPConnection | None = None) -> tuple[int, dict | None]:
        own = connection is None
        connection = connection or http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read()
            try:
                return response.status, json.loads(data) if data else None
            except ValueError:
                return response.status, {"text": data.decode(errors="replace")}
        finally:
            if own:
                connection.close()

    def stop(self, sig=signal.SIGTERM) -> None:
        self.process.send_signal(sig)
        self.process.wait(timeout=30)
        self.log.close()


def post(receiver: Receiver, event: dict | bytes, *, sign: bool = True, path: str = "/", **kw):
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    headers = {"Content-Type": "application/json"}
    if sign:
        headers["SC-Signature"] = signature_of(MANAGEMENT_TOKEN, body)
    return receiver.request("POST", path, body, headers, **kw)


def state(event_id: str, vehicle: str = "veh-1") -> dict:
    return {"eventId": event_id, "eventType": "VEHICLE_STATE",
            "data": {"vehicle": {"id": vehicle, "make": "TESLA", "model": "Model 3", "year": 2022},
                     "user": {"id": "user-1"},
                     "signals": [{"code": "odometer-traveleddistance", "name": "TraveledDistance", "group": "Odometer",
                                  "body": {"value": 100.5, "unit": "km"},
                                  "meta": {"oemUpdatedAt": 1788249600000, "retrievedAt": 1788249601000}}]},
            "triggers": [{"type": "SIGNAL_UPDATED", "signal": {"code": "odometer-traveleddistance"}}],
            "meta": {"version": "4.0", "deliveryId": f"d-{event_id}", "deliveredAt": 1788249602000,
                     "webhookId": "wh-1", "mode": "LIVE"}}


def landed_lines(data_dir: Path, *, in_progress: bool = False) -> list[str]:
    files = landing_files(data_dir / "landing")
    if in_progress:
        files += sorted((data_dir / "landing" / IN_PROGRESS_DIR).glob("*.ndjson"))
    return [line for f in files for line in f.read_text().splitlines()]


@pytest.fixture
def receiver(data_dir):
    running = Receiver(data_dir)
    yield running
    if running.process.poll() is None:
        running.stop()


@pytest.fixture(scope="module")
def refusing_receiver(tmp_path_factory):
    """One receiver for the tests of what it refuses or only answers: none of them stores a
    delivery, so each checks that landing is still empty (a start costs seconds of imports)."""
    data_dir = tmp_path_factory.mktemp("refusing")
    (data_dir / "landing").mkdir()
    running = Receiver(data_dir)
    yield running
    if running.process.poll() is None:
        running.stop()


def test_a_signed_delivery_is_stored_exactly_as_received_and_published_on_stop(data_dir, receiver):
    body = json.dumps(state("e-1"), separators=(",", ":")).encode()
    assert post(receiver, body) == (200, {"status": "stored"})
    assert post(receiver, state("e-2"), path="/webhooks/smartcar")[0] == 200
    assert landed_lines(data_dir, in_progress=True)[0] == body.decode()  # durable before the 200
    receiver.stop()
    lines = landed_lines(data_dir)
    assert lines[0] == body.decode() and len(lines) == 2
    [published] = landing_files(data_dir / "landing")
    assert published.relative_to(data_dir / "landing").parts[0] == "smartcar-webhook"
    assert not list((data_dir / "landing" / IN_PROGRESS_DIR).glob("*.ndjson"))


@pytest.mark.pipeline  # a `fleetlake serve` process: not a unit test
def test_signatures_are_checked(refusing_receiver):
    receiver, data_dir = refusing_receiver, refusing_receiver.data_dir
    body = json.dumps(state("e-1")).encode()
    assert post(receiver, body, sign=False)[0] == 401
    assert receiver.request("POST", "/", body, {"SC-Signature": "0" * 64})[0] == 401
    assert receiver.request("POST", "/", body, {"SC-Signature": signature_of("another-key", body)})[0] == 401
    tampered = body.replace(b"100.5", b"900.5")
    assert receiver.request("POST", "/", tampered, {"SC-Signature": signature_of(MANAGEMENT_TOKEN, body)})[0] == 401
    assert landed_lines(data_dir, in_progress=True) == []


@pytest.mark.pipeline  # a `fleetlake serve` process: not a unit test
def test_verify_is_answered_with_the_challenge_hmac(refusing_receiver):
    receiver, data_dir = refusing_receiver, refusing_receiver.data_dir
    verify = {"eventId": "v-1", "eventType": "VERIFY", "data": {"challenge": "abc123-random"},
              "meta": {"version": "4.0", "webhookId": "wh-1", "deliveredAt": "2026-09-01T08:00:00.000Z"}}
    status, answer = post(receiver, verify)
    assert status == 200 and answer == {"challenge": hash_challenge(MANAGEMENT_TOKEN, "abc123-random")}
    assert post(receiver, verify, sign=False)[1] == answer  # a plain challenge needs no signature
    forged = {**verify, "data": {"challenge": json.dumps(state("forged"))}}  # would make us sign a delivery
    assert post(receiver, forged, sign=False)[0] == 401
    assert landed_lines(data_dir, in_progress=True) == []


@pytest.mark.pipeline  # a `fleetlake serve` process: not a unit test
def test_bad_bodies_get_a_clear_4xx(refusing_receiver):
    receiver, data_dir = refusing_receiver, refusing_receiver.data_dir
    assert post(receiver, b"{not json")[0] == 400
    assert post(receiver, b"\xff\xfe{}")[0] == 400
    assert post(receiver, b"[1, 2]")[0] == 400
    assert post(receiver, b'{"eventId": "x"}')[0] == 400  # no eventType
    status, answer = post(receiver, b"{" + b" " * MAX_BODY_BYTES + b"}")
    assert status == 413 and "larger" in answer["error"]
    assert receiver.request("GET", "/")[0] == 405
    assert landed_lines(data_dir, in_progress=True) == []


def test_a_retried_delivery_is_acknowledged_and_stored_once(data_dir, receiver):
    assert post(receiver, state("e-1"))[1] == {"status": "stored"}
    assert post(receiver, state("e-1")) == (200, {"status": "duplicate"})
    pretty = json.dumps(state("e-2"), indent=2).encode()  # line breaks: stored on one line
    assert post(receiver, pretty)[0] == 200
    receiver.stop()
    lines = landed_lines(data_dir)
    assert [json.loads(line)["eventId"] for line in lines] == ["e-1", "e-2"]


def _load(receiver: Receiver, prefix: str, acked: list[str], stop: threading.Event, limit: int | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=30)
    n = 0
    while not stop.is_set() and (limit is None or n < limit):
        event_id = f"{prefix}-{n}"
        try:
            status, _ = post(receiver, state(event_id, vehicle=f"veh-{n % 7}"), connection=connection)
        except (OSError, http.client.HTTPException):
            return  # the server died
        if status == 200:
            acked.append(event_id)
        n += 1
    connection.close()


def test_concurrent_deliveries_are_all_stored(data_dir, receiver):
    acked: list[str] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_load, args=(receiver, f"t{i}", acked, stop, 50)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(acked) == 800
    receiver.stop()
    ids = [json.loads(line)["eventId"] for line in landed_lines(data_dir)]
    assert sorted(ids) == sorted(acked)


def test_a_kill_under_load_loses_no_acknowledged_delivery(data_dir):
    first = Receiver(data_dir)
    acked: list[str] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_load, args=(first, f"k{i}", acked, stop)) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    first.stop(signal.SIGKILL)  # mid-write, no shutdown
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) > 100
    left = list((data_dir / "landing" / IN_PROGRESS_DIR).glob("*.ndjson"))
    assert left  # the file in progress, never published
    on_disk = {json.loads(line)["eventId"] for f in left for line in f.read_text().splitlines()
               if line.endswith("}")}
    assert set(acked) <= on_disk
    second = Receiver(data_dir)  # recovery publishes it, cut after its last complete line
    second.stop()
    lines = landed_lines(data_dir)
    assert set(acked) <= {json.loads(line)["eventId"] for line in lines}  # every line is whole JSON
    assert not list((data_dir / "landing" / IN_PROGRESS_DIR).glob("*.ndjson"))


def test_landing_files_roll_over_by_age_and_size(tmp_path):
    landing = tmp_path / "landing"
    by_age = RollingLandingFile(landing, "smartcar-webhook", max_age_s=0.2)
    by_age.append([b'{"eventId": "a"}'])
    assert landing_files(landing) == []
    time.sleep(0.3)
    by_age.roll_if_old()
    assert len(landing_files(landing)) == 1
    by_size = RollingLandingFile(landing, "smartcar-webhook", max_bytes=100)
    for i in range(10):
        by_size.append([b'{"eventId": "%d", "pad": "%s"}' % (i, b"x" * 20)])
    by_size.close()
    assert len(landing_files(landing)) == 1 + 4  # 38-byte lines: rolled after 3, 6 and 9, then on close
