"""A small typed client for the parts of Smartcar's API v3 that Fleetlake reads.

- the application token from the client-credentials grant (`POST <iam>/oauth2/token`), kept
  until shortly before it expires and renewed once when the API rejects it;
- `GET /v3/connections` and `GET /v3/vehicles/{id}/signals` (with `sc-user-id`), paged by
  following `links.next` as the server gives it (the docs disagree on the parameter names);
- v3 errors (`{"errors": [{status, type, code, title, detail, resolution, ...}]}`) raised as
  one typed `SmartcarError`;
- retries: `retry-after` on 429 when the wait is short, exponential backoff with jitter on
  5xx and network errors. Every HTTP request to the vehicle API first takes a token from
  the caller's `RequestGate`, so that the caller's model of Smartcar's limits sees it.

A client may be used from several threads at once (the pull fetches vehicles concurrently):
each thread has its own HTTP session, and the gate, the request counts and the token are
shared under one lock, so the gate is never overdrawn and a rejected token is renewed once,
not once per thread.

The `smartcar` SDK (pinned) neither obtains this token nor sends `sc-user-id`, so this is
written on `requests`, which the SDK already brings.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote, urljoin, urlsplit

import requests

DEFAULT_IAM_ORIGIN = "https://iam.smartcar.com"
DEFAULT_VEHICLE_API_ORIGIN = "https://vehicle.api.smartcar.com"
TOKEN_MARGIN_S = 60.0  # renew a token this long before Smartcar says it expires


class SmartcarError(Exception):
    """An error answer from Smartcar (or the network), as Smartcar typed it. Its message
    names the request's path and the error, never a credential."""

    def __init__(self, status: int, type: str, code: str | None = None, *, title: str | None = None,
                 detail: str | None = None, resolution: str | None = None,
                 suggested_user_message: str | None = None, retry_after: float | None = None,
                 request_id: str | None = None, path: str = ""):
        self.status, self.type, self.code = status, type, code
        self.title, self.detail, self.resolution = title, detail, resolution
        self.suggested_user_message, self.retry_after = suggested_user_message, retry_after
        self.request_id, self.path = request_id, path
        super().__init__(f"{path or 'request'}: {status} {type}{':' + code if code else ''}"
                         f"{' - ' + (detail or title) if (detail or title) else ''}")

    @property
    def retryable(self) -> bool:
        return self.status >= 500 or self.type in ("NETWORK", "UPSTREAM", "SERVER")

    def as_vehicle_error(self) -> dict:
        """The entry of a VEHICLE_ERROR delivery's `data.errors[]` for this error."""
        entry = {"type": self.type, "code": self.code, "state": "ERROR",
                 "description": self.detail or self.title, "resolution": {"type": self.resolution}}
        if self.suggested_user_message:
            entry["suggestedUserMessage"] = self.suggested_user_message
        return entry

    @classmethod
    def from_response(cls, response: requests.Response, path: str) -> SmartcarError:
        retry_after = _seconds(response.headers.get("retry-after"))
        request_id = response.headers.get("sc-request-id")
        try:
            body = response.json()
        except ValueError:
            body = None
        first = {}
        if isinstance(body, dict):
            errors = body.get("errors")
            if isinstance(errors, list) and errors and isinstance(errors[0], dict):
                first = errors[0]  # v3
            elif "type" in body or "error" in body:
                first = body  # v2 shape, or an OAuth error from the token endpoint
        resolution = first.get("resolution")
        if isinstance(resolution, dict):
            resolution = resolution.get("type")
        oauth_error = first.get("error")
        return cls(
            status=response.status_code,
            type=str(first.get("type") or (oauth_error and "AUTHENTICATION") or _type_for(response.status_code)),
            code=first.get("code") or oauth_error,
            title=first.get("title"),
            detail=first.get("detail") if isinstance(first.get("detail"), str)
            else first.get("description") or first.get("error_description"),
            resolution=resolution, suggested_user_message=first.get("suggestedUserMessage"),
            retry_after=retry_after, request_id=request_id, path=path)


class CredentialsRejected(SmartcarError):
    """Smartcar refused the application's credentials (or a fresh token): nothing can be
    pulled until they are fixed."""


def _type_for(status: int) -> str:
    return {401: "AUTHENTICATION", 403: "PERMISSION", 404: "RESOURCE_NOT_FOUND", 409: "VEHICLE_STATE",
            429: "RATE_LIMIT", 430: "BILLING"}.get(status, "SERVER" if status >= 500 else "VALIDATION")


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare; treat as unknown


@dataclass(frozen=True)
class Credentials:
    client_id: str
    client_secret: str = field(repr=False)


@dataclass(frozen=True)
class Connection:
    """A vehicle connected to the application, and the user who connected it."""
    vehicle_id: str
    user_id: str
    connection_id: str | None = None
    connected_at: str | None = None  # the connection's meta.createdAt
    make: str | None = None
    model: str | None = None
    year: int | None = None
    mode: str | None = None

    @classmethod
    def from_resource(cls, item: dict) -> Connection | None:
        relationships = item.get("relationships") or {}
        vehicle = ((relationships.get("vehicle") or {}).get("data") or {}).get("id")
        user = ((relationships.get("user") or {}).get("data") or {}).get("id")
        if not vehicle or not user:
            return None
        attributes = (item.get("attributes") or {}).get("vehicle") or {}
        year = attributes.get("year")
        return cls(vehicle_id=str(vehicle), user_id=str(user), connection_id=item.get("id"),
                   connected_at=(item.get("meta") or {}).get("createdAt"), make=attributes.get("make"),
                   model=attributes.get("model"), year=year if isinstance(year, int) else None,
                   mode=attributes.get("mode"))


@dataclass(frozen=True)
class Signal:
    """One signal as `GET /v3/vehicles/{id}/signals` gives it."""
    code: str
    name: str | None
    group: str | None
    body: dict | None
    status: dict | str | None
    meta: dict

    @classmethod
    def from_resource(cls, item: dict) -> Signal | None:
        attributes = item.get("attributes") or {}
        code = attributes.get("code")
        if not code:
            return None
        meta = {k: v for k, v in (item.get("meta") or attributes.get("meta") or {}).items()
                if k in ("retrievedAt", "oemUpdatedAt", "fetchedAt")}
        return cls(code=code, name=attributes.get("name"), group=attributes.get("group"),
                   body=attributes.get("body"), status=attributes.get("status"), meta=meta)

    def as_delivery_signal(self) -> dict:
        """The signal in a webhook delivery's `data.signals[]` (the same schema)."""
        out = {"code": self.code, "name": self.name, "group": self.group,
               "status": self.status if self.status is not None else {"value": "SUCCESS"}, "meta": self.meta}
        if self.body is not None:
            out["body"] = self.body
        return out


class RequestGate(Protocol):
    def take(self) -> bool:
        """True if one more request may be sent now (it is then counted)."""


class _Unlimited:
    def take(self) -> bool:
        return True


class GateClosed(Exception):
    """The caller's limits allow no further request now."""


@dataclass
class RetryPolicy:
    attempts: int = 4  # per request, on 5xx and network errors
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = 10.0  # wait this long on a 429 inside a round; longer is deferred

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, base·2^attempt)]."""
        return random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2 ** attempt))


class SmartcarClient:
    def __init__(self, credentials: Credentials, *, iam_origin: str = DEFAULT_IAM_ORIGIN,
                 vehicle_api_origin: str = DEFAULT_VEHICLE_API_ORIGIN, timeout_s: float = 30.0,
                 retry: RetryPolicy | None = None, gate: RequestGate | None = None,
                 sleep: Callable[[float], None] = time.sleep, session: requests.Session | None = None):
        self._credentials = credentials
        self.iam_origin = iam_origin.rstrip("/")
        self.api_origin = vehicle_api_origin.rstrip("/")
        self.timeout_s, self.retry = timeout_s, retry or RetryPolicy()
        self.gate: RequestGate = gate or _Unlimited()
        self._sleep = sleep
        self._given_session = session
        self._sessions: list[requests.Session] = []
        self._local = threading.local()  # this thread's session and request count
        self._lock = threading.RLock()  # the gate, the counts and the token (renewal uses the session)
        self._token: str | None = None
        self._token_expires = 0.0
        self.requests_sent = 0  # vehicle-API requests, retries included, by every thread

    @property
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._given_session or requests.Session()
            session.headers["User-Agent"] = "fleetlake"
            with self._lock:
                self._sessions.append(session)
            self._local.session = session
        return session

    @property
    def requests_sent_by_this_thread(self) -> int:
        """This thread's share of `requests_sent`: what one vehicle's read cost, when a
        thread reads one vehicle at a time."""
        return getattr(self._local, "sent", 0)

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()

    # -- token ---------------------------------------------------------------------------------
    def token(self) -> str:
        with self._lock:  # one renewal however many threads find the token missing or old
            if self._token is None or time.monotonic() >= self._token_expires:
                self._renew_token()
            return self._token

    def _reject_token(self, token: str) -> None:
        """The API refused `token`: the next request renews it, unless another thread did."""
        with self._lock:
            if self._token == token:
                self._token = None

    def _renew_token(self) -> None:
        path = "/oauth2/token"
        try:
            response = self._session.post(
                self.iam_origin + path, timeout=self.timeout_s,
                data={"grant_type": "client_credentials", "client_id": self._credentials.client_id,
                      "client_secret": self._credentials.client_secret})
        except requests.RequestException as error:
            raise SmartcarError(0, "NETWORK", type(error).__name__, path=path) from None
        if response.status_code in (400, 401, 403):
            error = SmartcarError.from_response(response, path)
            raise CredentialsRejected(error.status, error.type, error.code, detail=error.detail, path=path,
                                      request_id=error.request_id) from None
        if response.status_code != 200:
            raise SmartcarError.from_response(response, path)
        body = response.json()
        self._token = body["access_token"]
        self._token_expires = time.monotonic() + max(0.0, float(body.get("expires_in", 3600)) - TOKEN_MARGIN_S)

    # -- requests ------------------------------------------------------------------------------
    def _get(self, url: str, user_id: str | None = None) -> dict:
        path = urlsplit(url).path
        renewed = False
        attempt = 0
        while True:
            with self._lock:
                if not self.gate.take():
                    raise GateClosed(path)
                self.requests_sent += 1
            self._local.sent = self.requests_sent_by_this_thread + 1
            token = self.token()
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            if user_id is not None:
                headers["sc-user-id"] = user_id
            try:
                response = self._session.get(url, headers=headers, timeout=self.timeout_s)
            except requests.RequestException as error:
                failure = SmartcarError(0, "NETWORK", type(error).__name__, path=path,
                                        resolution="RETRY_LATER")
            else:
                if response.status_code == 200:
                    return response.json()
                failure = SmartcarError.from_response(response, path)
                if response.status_code == 401 and failure.type == "AUTHENTICATION":
                    if renewed:
                        raise CredentialsRejected(401, failure.type, failure.code, detail=failure.detail,
                                                  path=path, request_id=failure.request_id)
                    renewed = True  # expired or revoked: renew once
                    self._reject_token(token)
                    continue
                if response.status_code == 429 and failure.retry_after is not None \
                        and failure.retry_after <= self.retry.max_retry_after_s and attempt < self.retry.attempts:
                    attempt += 1
                    self._sleep(failure.retry_after)
                    continue
            if failure.retryable and attempt + 1 < self.retry.attempts:
                self._sleep(self.retry.backoff(attempt))
                attempt += 1
                continue
            raise failure

    def _pages(self, path: str, user_id: str | None = None) -> Iterator[dict]:
        """Each page of a paged resource, following `links.next` while it stays on the API's
        origin (the bearer token is never sent elsewhere)."""
        url = self.api_origin + path
        seen = set()
        while url and url not in seen:
            seen.add(url)
            page = self._get(url, user_id)
            yield page
            next_link = (page.get("links") or {}).get("next")
            if not next_link:
                return
            url = self._resolve(next_link, url)
            if urlsplit(url)[:2] != urlsplit(self.api_origin)[:2]:
                raise SmartcarError(0, "VALIDATION", "FOREIGN_LINK", path=path,
                                    detail="links.next points to another origin")

    def _resolve(self, link: str, current: str) -> str:
        if link.startswith(("http://", "https://")):
            return link
        if link.startswith("/v3/"):
            return self.api_origin + link
        if link.startswith("/"):
            return self.api_origin + "/v3" + link  # the docs show links relative to /v3
        return urljoin(current, link)

    def connections(self) -> Iterator[Connection]:
        for page in self._pages("/v3/connections"):
            for item in page.get("data") or []:
                connection = Connection.from_resource(item) if isinstance(item, dict) else None
                if connection:
                    yield connection

    def signals(self, vehicle_id: str, user_id: str) -> tuple[list[Signal], dict]:
        """Every signal of a vehicle, and the vehicle's attributes when the response includes them."""
        signals, vehicle = [], {}
        for page in self._pages(f"/v3/vehicles/{_path_segment(vehicle_id)}/signals", user_id):
            for item in page.get("data") or []:
                signal = Signal.from_resource(item) if isinstance(item, dict) else None
                if signal:
                    signals.append(signal)
            included = (page.get("included") or {}).get("vehicle") or {}
            vehicle = vehicle or (included.get("attributes") or {})
        return signals, vehicle


def _path_segment(value: str) -> str:
    return quote(value, safe="")
