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

Landing files roll over by size or age and are published into landing; the file in
progress lives in `landing/.in-progress/`, and a start publishes what a crash left there
(cut after its last complete line). One receiver per landing folder: a second is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
from collections import OrderedDict
from pathlib import Path

from smartcar import hash_challenge
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipelines.sources.landing_writer import IN_PROGRESS_DIR, GroupCommit, RollingLandingFile

SOURCE = "smartcar-webhook"
MAX_BODY_BYTES = 1 << 20
RECENT_EVENTS = 100_000  # event ids already on disk: a retry of one is acknowledged, not written again


def signature_of(key: str, body: bytes) -> str:
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def _plain_challenge(challenge: object) -> bool:
    """A challenge whose HMAC could not be mistaken for a delivery's signature."""
    return isinstance(challenge, str) and 0 < len(challenge) <= 256 and challenge.isascii() \
        and challenge.strip()[:1] not in ("{", "[", '"')


def _problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


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


def create_app(landing: Path, management_token: str, *, max_body_bytes: int = MAX_BODY_BYTES,
               max_file_bytes: int = 64 << 20, max_file_age_s: float = 60.0) -> Starlette:
    if not management_token:
        raise ValueError("the webhook receiver needs SMARTCAR_MANAGEMENT_TOKEN")
    landing = Path(landing)
    file = RollingLandingFile(landing, SOURCE, max_bytes=max_file_bytes, max_age_s=max_file_age_s)
    commit = GroupCommit(file)
    recent: OrderedDict[str, None] = OrderedDict()

    async def read_body(request: Request) -> bytes | None:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body_bytes:
            return None
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def receive(request: Request) -> Response:
        body = await read_body(request)
        if body is None:
            return _problem(413, f"body larger than {max_body_bytes} bytes")
        given = request.headers.get("sc-signature", "").strip().lower()
        signed = bool(given) and hmac.compare_digest(given, signature_of(management_token, body))
        if given and not signed:
            return _problem(401, "SC-Signature does not match the body")
        try:
            event = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return _problem(400 if signed else 401, "body is not UTF-8 JSON" if signed else "SC-Signature missing")
        if not isinstance(event, dict) or not isinstance(event.get("eventType"), str):
            return _problem(400 if signed else 401,
                            "body is not a Smartcar delivery (a JSON object with an eventType)" if signed
                            else "SC-Signature missing")
        if event["eventType"] == "VERIFY":
            challenge = (event.get("data") or {}).get("challenge") if isinstance(event.get("data"), dict) else None
            if not isinstance(challenge, str) or not (signed or _plain_challenge(challenge)):
                return _problem(400 if signed else 401, "VERIFY without a usable challenge" if signed
                                else "SC-Signature missing")
            return JSONResponse({"challenge": hash_challenge(management_token, challenge)})
        if not signed:
            return _problem(401, "SC-Signature missing")
        event_id = event.get("eventId")
        if isinstance(event_id, str) and event_id in recent:
            return JSONResponse({"status": "duplicate"})  # already on disk: Smartcar retried
        # NDJSON needs one line: a body with line breaks is re-serialized (same JSON).
        line = body if b"\n" not in body and b"\r" not in body else json.dumps(event, ensure_ascii=False).encode()
        try:
            await commit.append(line)
        except OSError:
            return _problem(503, "could not store the delivery; retry later")
        if isinstance(event_id, str):
            recent[event_id] = None
            if len(recent) > RECENT_EVENTS:
                recent.popitem(last=False)
        return JSONResponse({"status": "stored"})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(app):
        single = _SingleReceiver(landing)
        await asyncio.to_thread(file.recover)

        async def roll_old_files():
            while True:
                await asyncio.sleep(min(1.0, max_file_age_s / 4))
                await asyncio.to_thread(file.roll_if_old)

        roller = asyncio.create_task(roll_old_files())
        try:
            yield
        finally:
            roller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await roller
            await asyncio.to_thread(file.close)
            single.release()

    return Starlette(routes=[Route("/", receive, methods=["POST"]),
                             Route("/webhooks/smartcar", receive, methods=["POST"]),
                             Route("/health", health, methods=["GET"])], lifespan=lifespan)


def serve(landing: Path, management_token: str, host: str = "127.0.0.1", port: int = 8000, **options) -> None:
    """Run the receiver on uvicorn (one process: the landing file is one writer's)."""
    import uvicorn

    app = create_app(landing, management_token, **options)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, server_header=False,
                timeout_graceful_shutdown=10)
