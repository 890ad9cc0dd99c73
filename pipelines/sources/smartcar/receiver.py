"""The webhook receiver: Smartcar's deliveries (payload 4.0) into landing.

`POST /` and `POST /webhooks/smartcar`:

1. the body is read up to `max_body_bytes` (413 beyond it);
2. `SC-Signature` must be the hex HMAC-SHA256 of the raw body keyed by the application
   management token, compared in constant time (401 when missing or wrong). One exception:
   an unsigned `VERIFY` whose challenge is a plain token (not JSON, short) is answered,
   because its answer cannot sign a delivery;
3. the body must be a UTF-8 JSON object with an `eventType` (400 otherwise);
4. `VERIFY` is answered `{"challenge": HMAC(data.challenge)}`; any other event is appended
   to landing through group commit and acknowledged with 200 only once it is on disk. A
   failed write answers 503, so Smartcar retries.

The hot path is a plain ASGI application on uvicorn (uvloop, httptools, no access log, no
proxy-header rewriting): a delivery costs one HMAC, one `json.loads` to validate it, and a
share of one fsync; the body is stored as the bytes received (re-serialized only when it
holds a line break). Starlette's routing, request and response objects cost more per
request than all of that together, and the receiver needs none of them.

Landing files roll over by size or age and are published into landing; the file in
progress lives in `landing/.in-progress/`, and a start publishes what a crash left there
(cut after its last complete line). One receiver per landing folder: a second is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import hashlib
import hmac
import json
import os
import sys
from collections import OrderedDict
from pathlib import Path

from smartcar import hash_challenge

from pipelines.sources.landing_writer import IN_PROGRESS_DIR, GroupCommit, RollingLandingFile

SOURCE = "smartcar-webhook"
MAX_BODY_BYTES = 1 << 20
RECENT_EVENTS = 100_000  # event ids already on disk: a retry of one is acknowledged, not written again
DELIVERY_PATHS = ("/", "/webhooks/smartcar")


def signature_of(key: str, body: bytes) -> str:
    return hmac.digest(key.encode(), body, hashlib.sha256).hex()


def _plain_challenge(challenge: object) -> bool:
    """A challenge whose HMAC could not be mistaken for a delivery's signature."""
    return isinstance(challenge, str) and 0 < len(challenge) <= 256 and challenge.isascii() \
        and challenge.strip()[:1] not in ("{", "[", '"')


class _Answer:
    """A complete HTTP answer as the two ASGI messages uvicorn sends, built once where it can be."""

    def __init__(self, status: int, body: dict, extra_headers: tuple = ()):
        data = json.dumps(body, separators=(",", ":")).encode()
        self.start = {"type": "http.response.start", "status": status,
                      "headers": [(b"content-type", b"application/json"),
                                  (b"content-length", str(len(data)).encode()), *extra_headers]}
        self.body = {"type": "http.response.body", "body": data}

    async def send(self, send) -> None:
        await send(self.start)
        await send(self.body)


STORED = _Answer(200, {"status": "stored"})
DUPLICATE = _Answer(200, {"status": "duplicate"})
HEALTHY = _Answer(200, {"status": "ok"})
UNSIGNED = _Answer(401, {"error": "SC-Signature missing"})
WRONG_SIGNATURE = _Answer(401, {"error": "SC-Signature does not match the body"})
TOO_LARGE = _Answer(413, {"error": f"body larger than {MAX_BODY_BYTES} bytes"})
NOT_JSON = _Answer(400, {"error": "body is not UTF-8 JSON"})
NOT_A_DELIVERY = _Answer(400, {"error": "body is not a Smartcar delivery (a JSON object with an eventType)"})
NO_CHALLENGE = _Answer(400, {"error": "VERIFY without a usable challenge"})
NOT_STORED = _Answer(503, {"error": "could not store the delivery; retry later"})
NOT_FOUND = _Answer(404, {"error": "not found"})
POST_ONLY = _Answer(405, {"error": "method not allowed"}, ((b"allow", b"POST"),))
GET_ONLY = _Answer(405, {"error": "method not allowed"}, ((b"allow", b"GET"),))


class _ClientGone(Exception):
    """The client disconnected before its body arrived: there is no one to answer."""


class _SingleReceiver:
    """An exclusive lock on the landing folder's in-progress directory for this source."""

    def __init__(self, landing: Path):
        folder = landing / IN_PROGRESS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(folder / f"{SOURCE}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise RuntimeError(f"another webhook receiver is writing to {landing}") from None

    def release(self) -> None:
        os.close(self._fd)


class WebhookReceiver:
    """The ASGI application: deliveries on `DELIVERY_PATHS`, `GET /health`, and a lifespan
    that takes the landing folder, recovers a crashed file, and publishes the open one."""

    def __init__(self, landing: Path, management_token: str, *, max_body_bytes: int = MAX_BODY_BYTES,
                 max_file_bytes: int = 64 << 20, max_file_age_s: float = 60.0):
        if not management_token:
            raise ValueError("the webhook receiver needs SMARTCAR_MANAGEMENT_TOKEN")
        self.landing = Path(landing)
        self._key = management_token
        self._key_bytes = management_token.encode()
        self.max_body_bytes, self.max_file_age_s = max_body_bytes, max_file_age_s
        self._too_large = TOO_LARGE if max_body_bytes == MAX_BODY_BYTES else \
            _Answer(413, {"error": f"body larger than {max_body_bytes} bytes"})
        self.file = RollingLandingFile(self.landing, SOURCE, max_bytes=max_file_bytes, max_age_s=max_file_age_s)
        self.commit = GroupCommit(self.file)
        self._recent: OrderedDict[str, None] = OrderedDict()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope, receive, send) -> None:
        path, method = scope["path"], scope["method"]
        if path in DELIVERY_PATHS:
            if method != "POST":
                return await POST_ONLY.send(send)
            try:
                answer = await self._delivery(scope, receive)
            except _ClientGone:
                return
            await answer.send(send)
        elif path == "/health":
            await (HEALTHY if method in ("GET", "HEAD") else GET_ONLY).send(send)
        else:
            await NOT_FOUND.send(send)

    async def _body(self, scope, receive) -> bytes | None:
        """The whole body, or None when it is larger than allowed."""
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                return None
        message = await receive()
        if message["type"] != "http.request":
            raise _ClientGone
        body = message.get("body", b"")
        if not message.get("more_body"):  # the usual case: the whole body in one message
            return body if len(body) <= self.max_body_bytes else None
        chunks, size = [body], len(body)
        while message.get("more_body"):
            message = await receive()
            if message["type"] != "http.request":
                raise _ClientGone
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body_bytes:
                return None
        return b"".join(chunks)

    async def _delivery(self, scope, receive) -> _Answer:
        """What to answer a POST (stored only once it is durable in landing)."""
        body = await self._body(scope, receive)
        if body is None:
            return self._too_large
        given = b""
        for name, value in scope["headers"]:
            if name == b"sc-signature":
                given = value.strip().lower()
        expected = hmac.digest(self._key_bytes, body, hashlib.sha256).hex().encode()
        signed = bool(given) and hmac.compare_digest(given, expected)
        if given and not signed:
            return WRONG_SIGNATURE
        try:
            event = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return NOT_JSON if signed else UNSIGNED
        if not isinstance(event, dict) or not isinstance(event.get("eventType"), str):
            return NOT_A_DELIVERY if signed else UNSIGNED
        if event["eventType"] == "VERIFY":
            return self._verify(event, signed)
        if not signed:
            return UNSIGNED
        event_id = event.get("eventId")
        if isinstance(event_id, str) and event_id in self._recent:
            return DUPLICATE  # already on disk: Smartcar retried
        # NDJSON needs one line: a body with line breaks is re-serialized (same JSON).
        line = body if b"\n" not in body and b"\r" not in body else json.dumps(event, ensure_ascii=False).encode()
        try:
            await self.commit.append(line)
        except OSError:
            return NOT_STORED
        if isinstance(event_id, str):
            self._recent[event_id] = None
            if len(self._recent) > RECENT_EVENTS:
                self._recent.popitem(last=False)
        return STORED

    def _verify(self, event: dict, signed: bool) -> _Answer:
        data = event.get("data")
        challenge = data.get("challenge") if isinstance(data, dict) else None
        if not isinstance(challenge, str) or not (signed or _plain_challenge(challenge)):
            return NO_CHALLENGE if signed else UNSIGNED
        return _Answer(200, {"challenge": hash_challenge(self._key, challenge)})

    async def _lifespan(self, receive, send) -> None:
        await receive()  # lifespan.startup
        try:
            single = _SingleReceiver(self.landing)
            await asyncio.to_thread(self.file.recover)
        except Exception as error:
            await send({"type": "lifespan.startup.failed", "message": str(error)})
            return
        roller = asyncio.create_task(self._roll_old_files())
        # A full collection walks every object the imports made, tens of ms in which no answer
        # goes out (p99 at 2,000/s: up to 400 ms). What exists at start-up lives as long as the
        # process: freeze it out of the collector, and collect the young generation less often.
        gc.freeze()
        gc.set_threshold(20_000, 50, 1_000)
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown: uvicorn has finished the requests in flight
        roller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await roller
        await asyncio.to_thread(self.file.close)
        self.commit.close()
        single.release()
        await send({"type": "lifespan.shutdown.complete"})

    async def _roll_old_files(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.max_file_age_s / 4))
            await asyncio.to_thread(self.file.roll_if_old)


def serve(landing: Path, management_token: str, host: str = "127.0.0.1", port: int = 8000, **options) -> None:
    """Run the receiver on uvicorn (one process: the landing file is one writer's)."""
    import uvicorn

    # The fsync thread needs the GIL back to hand a batch's 200s to the event loop, and a busy
    # loop would keep it for up to the default 5 ms switch interval per batch: a shorter one
    # puts a batch's answers out sooner (measured: p99 85 -> 52 ms, 1,724 -> 2,220/s, load 15).
    sys.setswitchinterval(0.0005)
    app = WebhookReceiver(landing, management_token, **options)
    uvicorn.run(app, host=host, port=port, loop="uvloop", http="httptools", lifespan="on", log_level="warning",
                access_log=False, proxy_headers=False, server_header=False, timeout_graceful_shutdown=10)
