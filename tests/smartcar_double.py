"""A local HTTP double of Smartcar's API v3, as documented, for tests and benchmarks.

    with SmartcarDouble(vehicles=3) as smartcar:
        env = smartcar.env()  # SMARTCAR_* pointing at it

It serves, on a free port of 127.0.0.1 (one server for both origins):

- `POST /oauth2/token`: the client-credentials grant; 401 `invalid_client` on bad credentials;
  tokens expire after `token_ttl_s`, or at once with `expire_tokens()`;
- `GET /v3/connections`: JSON:API pages with an opaque `cursor` in `links.next`;
- `GET /v3/vehicles/{id}/signals`: needs `sc-user-id` of the vehicle's user; paged when
  `signal_page_size` is set; `included.vehicle` with make, model and year;
- errors in the v3 shape `{"errors": [{status, type, code, title, detail, resolution, ...}]}`:
  401 for an unknown or expired token, 403 for a revoked vehicle, 409 ASLEEP, and whatever
  is scripted per vehicle with `script(vehicle_id, ...)` (429 with `retry-after`, 430, 5xx,
  a dropped connection);
- the application bucket (`bucket_capacity`, refilled at `bucket_refill_per_minute`), which
  answers 429 RATE_LIMIT when empty and counts it in `bucket_refusals`.

Every request is logged in `requests` (method, path, headers) so tests can check what the
client sent; `max_in_flight` is the most vehicle-API requests it was ever serving at once.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

CLIENT_ID = "double-client-id"
CLIENT_SECRET = "double-client-secret-Zq8rT2"
MANAGEMENT_TOKEN = "double-management-token-Hk4vW9"

_ERRORS = {
    "revoked": (403, "PERMISSION", None, "The vehicle owner revoked this application's access.", "REAUTHENTICATE"),
    "asleep": (409, "VEHICLE_STATE", "ASLEEP", "The vehicle is asleep.", "RETRY_LATER"),
    "unreachable": (409, "VEHICLE_STATE", "UNREACHABLE", "The vehicle is unreachable.", "RETRY_LATER"),
    "rescinded": (400, "CONNECTED_SERVICES_ACCOUNT", "PERMISSION",
                  "The manufacturer rescinded access to this vehicle.", "REAUTHENTICATE"),
    "billing": (430, "BILLING", "VEHICLE_REQUEST_LIMIT", "The vehicle's monthly request limit is reached.",
                "CONTACT_SUPPORT"),
    "rate": (429, "RATE_LIMIT", "VEHICLE", "Too many requests for this vehicle.", "RETRY_LATER"),
    "server": (500, "SERVER", "INTERNAL", "An internal Smartcar error has occurred.", "RETRY_LATER"),
    "upstream": (502, "UPSTREAM", "UNKNOWN_ISSUE", "The manufacturer's servers did not answer.", "RETRY_LATER"),
}


@dataclass
class Vehicle:
    id: str
    user_id: str
    make: str = "TESLA"
    model: str = "Model 3"
    year: int = 2022
    odometer_km: float = 12000.0
    soc_pct: float = 80.0
    updated_ms: int = 1788249600000  # 2026-09-01T08:00:00Z
    connected_at: str = "2026-08-01T00:00:00Z"
    connection_id: str = ""
    state: str = "ok"  # ok | revoked | asleep | unreachable | rescinded

    def signals(self) -> list[dict]:
        def item(code: str, body: dict) -> dict:
            group, name = code.split("-", 1)
            return {"id": code, "type": "signal",
                    "attributes": {"code": code, "name": name.title(), "group": group.title(),
                                   "status": {"value": "SUCCESS"}, "body": body},
                    "meta": {"retrievedAt": self.updated_ms + 1500, "oemUpdatedAt": self.updated_ms},
                    "links": {"self": f"/vehicles/{self.id}/signals/{code}"}}

        return [item("odometer-traveleddistance", {"value": round(self.odometer_km, 1), "unit": "km"}),
                item("tractionbattery-stateofcharge", {"value": round(self.soc_pct, 1), "unit": "percent"}),
                item("charge-ischarging", {"value": False}),
                item("location-preciselocation", {"latitude": 52.52, "longitude": 13.405, "heading": 90})]

    def drive(self, km: float, minutes: float = 60) -> None:
        self.odometer_km += km
        self.soc_pct = max(5.0, self.soc_pct - km / 5)
        self.updated_ms += int(minutes * 60_000)


class SmartcarDouble:
    def __init__(self, vehicles: int = 3, *, page_size: int = 50, signal_page_size: int | None = None,
                 token_ttl_s: int = 3600, bucket_capacity: float = 120, bucket_refill_per_minute: float = 2,
                 latency_s: float = 0.0):
        self.vehicles: dict[str, Vehicle] = {}
        for i in range(vehicles):
            self.add_vehicle(f"veh-{i:04d}", f"user-{i % max(1, vehicles // 2 or 1):04d}")
        self.page_size, self.signal_page_size, self.token_ttl_s = page_size, signal_page_size, token_ttl_s
        self.bucket_capacity, self.bucket_refill_per_minute = bucket_capacity, bucket_refill_per_minute
        self._bucket, self._bucket_at = float(bucket_capacity), time.monotonic()
        self.bucket_refusals = 0
        self.latency_s = latency_s
        self.in_flight = self.max_in_flight = 0
        self.tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self.token_grants = 0
        self.requests: list[dict] = []
        self._scripts: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- set-up --------------------------------------------------------------------------------
    def add_vehicle(self, vehicle_id: str, user_id: str, **kwargs) -> Vehicle:
        vehicle = Vehicle(vehicle_id, user_id, connection_id=f"conn-{vehicle_id}", **kwargs)
        self.vehicles[vehicle_id] = vehicle
        return vehicle

    def disconnect(self, vehicle_id: str) -> None:
        """The user disconnected the vehicle: it is no longer listed, and its API answers 403."""
        self.vehicles.pop(vehicle_id)

    def script(self, vehicle_id: str, *answers: str) -> None:
        """Answers the vehicle's next signal requests give, in order, before its normal answer:
        names of `_ERRORS` (`rate:SECONDS` sets retry-after), or `drop` (close the connection)."""
        self._scripts.setdefault(vehicle_id, []).extend(answers)

    def refill_bucket(self) -> None:
        with self._lock:
            self._bucket, self._bucket_at = float(self.bucket_capacity), time.monotonic()

    def expire_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def env(self) -> dict[str, str]:
        return {"SMARTCAR_CLIENT_ID": CLIENT_ID, "SMARTCAR_CLIENT_SECRET": CLIENT_SECRET,
                "SMARTCAR_MANAGEMENT_TOKEN": MANAGEMENT_TOKEN, "SMARTCAR_IAM_ORIGIN": self.origin,
                "SMARTCAR_VEHICLE_API_V3_ORIGIN": self.origin, "SMARTCAR_MANAGEMENT_ORIGIN": self.origin}

    def calls(self, prefix: str) -> list[dict]:
        return [r for r in self.requests if r["path"].startswith(prefix)]

    # -- server --------------------------------------------------------------------------------
    def __enter__(self) -> SmartcarDouble:
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                double._handle(self, "POST")

            def do_GET(self):
                double._handle(self, "GET")

            def do_DELETE(self):
                double._handle(self, "DELETE")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- handling ------------------------------------------------------------------------------
    def _send(self, handler, status: int, body: dict | None, headers: dict | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("SC-Request-Id", secrets.token_hex(8))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(data)

    def _error(self, handler, status: int, type_: str, code: str | None, detail: str, resolution: str | None,
               headers: dict | None = None) -> None:
        self._send(handler, status, {"errors": [{
            "status": str(status), "type": type_, "code": code, "title": type_.replace("_", " ").title(),
            "detail": detail, "resolution": {"type": resolution},
            "suggestedUserMessage": "Your car is temporarily unable to connect."}]}, headers)

    def _take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._bucket = min(self.bucket_capacity,
                               self._bucket + (now - self._bucket_at) / 60 * self.bucket_refill_per_minute)
            self._bucket_at = now
            if self._bucket < 1:
                self.bucket_refusals += 1
                return False
            self._bucket -= 1
            return True

    def _handle(self, handler, method: str) -> None:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self._lock:
            self.requests.append({"method": method, "path": url.path, "query": url.query,
                                  "headers": dict(handler.headers.items()), "body": body.decode(errors="replace")})
        if method == "POST" and url.path == "/oauth2/token":
            if self.latency_s:
                time.sleep(self.latency_s)
            return self._token(handler, parse_qs(body.decode()))
        if method == "DELETE" and url.path.rstrip("/") == "/v2.0/management/connections":
            return self._delete_connections(handler, parse_qs(url.query))
        if method != "GET" or not url.path.startswith("/v3/"):
            return self._error(handler, 404, "RESOURCE_NOT_FOUND", "PATH", "Unknown path.", None)
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency_s:
                time.sleep(self.latency_s)  # the API's latency: while it lasts, the request is in flight
            self._vehicle_api(handler, url)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _delete_connections(self, handler, query: dict) -> None:
        """Smartcar's management API: remove a vehicle's connections (or a user's, or that
        vehicle's for that user), with the application management token as Basic auth."""
        expected = "Basic " + base64.b64encode(f"default:{MANAGEMENT_TOKEN}".encode()).decode()
        if handler.headers.get("Authorization") != expected:
            return self._error(handler, 401, "AUTHENTICATION", None, "Invalid management token.", None)
        vehicle, user = (query.get("vehicle_id") or [None])[0], (query.get("user_id") or [None])[0]
        gone = [v for v in list(self.vehicles.values())
                if (vehicle is None or v.id == vehicle) and (user is None or v.user_id == user)]
        for v in gone:
            self.vehicles.pop(v.id)
        self._send(handler, 200, {"connections": [{"userId": v.user_id, "vehicleId": v.id} for v in gone]})

    def _vehicle_api(self, handler, url) -> None:
        auth = handler.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ")
        with self._lock:
            expiry = self.tokens.get(token)
        if not auth.startswith("Bearer ") or expiry is None or expiry < time.monotonic():
            return self._error(handler, 401, "AUTHENTICATION", None, "The access token is invalid or expired.", None)
        if not self._take():
            return self._error(handler, 429, "RATE_LIMIT", "SMARTCAR_API", "Application rate limit exceeded.",
                               "RETRY_LATER", {"retry-after": "30"})
        if url.path == "/v3/connections":
            return self._connections(handler, parse_qs(url.query))
        parts = url.path.split("/")
        if len(parts) == 5 and parts[2] == "vehicles" and parts[4] == "signals":
            return self._signals(handler, unquote(parts[3]), handler.headers.get("sc-user-id"), parse_qs(url.query))
        return self._error(handler, 404, "RESOURCE_NOT_FOUND", "PATH", "Unknown path.", None)

    def _token(self, handler, form: dict) -> None:
        if form.get("grant_type") != ["client_credentials"]:
            return self._send(handler, 400, {"error": "invalid_request", "error_description": "grant_type"})
        if form.get("client_id") != [CLIENT_ID] or form.get("client_secret") != [CLIENT_SECRET]:
            return self._send(handler, 401, {"error": "invalid_client",
                                             "error_description": "Invalid client_id or client_secret"})
        token = "tok-" + secrets.token_hex(12)
        with self._lock:
            self.tokens[token] = time.monotonic() + self.token_ttl_s
            self.token_grants += 1
        self._send(handler, 200, {"access_token": token, "token_type": "Bearer", "expires_in": self.token_ttl_s})

    def _connections(self, handler, query: dict) -> None:
        start = int(query.get("cursor", ["0"])[0] or 0)
        ids = sorted(self.vehicles)
        page = ids[start:start + self.page_size]
        data = [{"id": self.vehicles[v].connection_id, "type": "connection",
                 "attributes": {"permissions": ["read_odometer", "read_battery"],
                                "vehicle": {"make": self.vehicles[v].make, "model": self.vehicles[v].model,
                                            "year": self.vehicles[v].year, "mode": "live"}},
                 "relationships": {"vehicle": {"data": {"id": v, "type": "vehicle"}},
                                   "user": {"data": {"id": self.vehicles[v].user_id, "type": "user"}}},
                 "meta": {"createdAt": self.vehicles[v].connected_at}} for v in page]
        more = start + self.page_size < len(ids)
        self._send(handler, 200, {"data": data, "meta": {"totalCount": len(ids)},
                                  "links": {"self": f"/v3/connections?cursor={start}",
                                            "next": f"/v3/connections?cursor={start + self.page_size}" if more else None}})

    def _signals(self, handler, vehicle_id: str, user_id: str | None, query: dict) -> None:
        vehicle = self.vehicles.get(vehicle_id)
        if vehicle is None:
            return self._error(handler, 403, *_ERRORS["revoked"][1:])
        if user_id != vehicle.user_id:
            return self._error(handler, 400, "VALIDATION", "PARAMETER", "sc-user-id is missing or wrong.", None)
        with self._lock:
            script = self._scripts.get(vehicle_id)
            answer = script.pop(0) if script else vehicle.state
        if answer == "drop":
            handler.close_connection = True
            handler.connection.shutdown(2)
            return
        if answer != "ok":
            name, _, seconds = answer.partition(":")
            status, type_, code, detail, resolution = _ERRORS[name]
            headers = {"retry-after": seconds or "5"} if status == 429 else None
            return self._error(handler, status, type_, code, detail, resolution, headers)
        signals = vehicle.signals()
        size = self.signal_page_size or len(signals)
        start = int(query.get("cursor", ["0"])[0] or 0)
        more = start + size < len(signals)
        self._send(handler, 200, {
            "data": signals[start:start + size],
            "meta": {"totalCount": len(signals)},
            "links": {"next": f"/vehicles/{vehicle_id}/signals?cursor={start + size}" if more else None},
            "included": {"vehicle": {"id": vehicle_id, "type": "vehicle",
                                     "attributes": {"make": vehicle.make, "model": vehicle.model,
                                                    "year": vehicle.year}}}})
