"""One round of pulling from Smartcar's API v3 into landing.

A round lists the application's connections, records who is connected (and who is no
longer listed), plans which connected vehicles to pull under the limits (limits.py), fetches
their signals, and lands one delivery per vehicle in the webhook shape, so that ingest
reads pulled and pushed data alike:

- a `VEHICLE_STATE` delivery with the signals, `meta.mode` "PULL", and an `eventId` that is
  a hash of the vehicle and its signals (codes, bodies, statuses, times): pulling the same
  state twice lands the same event, which ingest counts once;
- a `VEHICLE_ERROR` delivery when Smartcar answers the vehicle's request with an error
  (permission revoked, asleep, unreachable, billing limit, ...), its `eventId` a hash of the
  vehicle, the error and the UTC day: one error record per vehicle, error and day.

Vehicles are read concurrently, at most `Limits.max_in_flight` at a time, through one
client whose request gate is the application bucket (so no thread can overdraw it); the
results are handled in plan order, so a round lands what a sequential one would. When one
read finds the bucket empty or Smartcar limiting the application, no further vehicle
starts, and those not started are deferred.

Lines are written through the landing writer in files of at most `FILE_VEHICLES` vehicles,
and the connection records are saved after each file, so a crash loses at most the
vehicles of the file being written (they are pulled again next round).
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from pipelines.sources.landing_writer import dated_name, write_landing_file
from pipelines.sources.smartcar.client import (Connection, CredentialsRejected, GateClosed, SmartcarClient,
                                               SmartcarError)
from pipelines.sources.smartcar.limits import Limits, RequestBucket, VehicleDue, month_key, plan_round
from storage.erased_record import USER, VEHICLE, ErasedRecord
from storage.connections import CONNECTIONS_SCHEMA, read_connections, write_connections
from storage.files import write_text_atomic
from storage.layout import SmartcarLayout

SOURCE = "smartcar-pull"
FILE_VEHICLES = 200
# Errors that mean the application may no longer read the vehicle: the connection is over
# until the user connects it again (a new connection).
_ACCESS_LOST_TYPES = {"PERMISSION", "AUTHENTICATION"}
_ACCESS_LOST_CODES = {"AUTHENTICATION_FAILED", "PERMISSION", "VEHICLE_MISSING", "ACCOUNT_ISSUE"}


def access_lost(error: SmartcarError) -> bool:
    return (error.type in _ACCESS_LOST_TYPES or error.resolution == "REAUTHENTICATE"
            or (error.type == "CONNECTED_SERVICES_ACCOUNT" and error.code in _ACCESS_LOST_CODES))


def app_rate_limited(error: SmartcarError) -> bool:
    """A 429 for the application as a whole (code SMARTCAR_API), not for one vehicle."""
    return error.status == 429 and error.code not in (None, "VEHICLE")


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _digest(*parts: object) -> str:
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _vehicle(connection: Connection, attributes: dict) -> dict:
    vehicle = {"id": connection.vehicle_id, "make": attributes.get("make") or connection.make,
               "model": attributes.get("model") or connection.model, "year": attributes.get("year") or connection.year}
    if attributes.get("vin"):
        vehicle["vin"] = attributes["vin"]
    return vehicle


def _meta(at: datetime, connection: Connection) -> dict:
    return {"version": "4.0", "deliveryId": uuid.uuid4().hex, "deliveredAt": _ms(at), "webhookId": None,
            "mode": "PULL", "vehicleMode": connection.mode, "source": SOURCE}


def state_delivery(connection: Connection, signals: list[dict], attributes: dict, at: datetime) -> dict:
    event_id = "pull-" + _digest(connection.vehicle_id, sorted(
        (s["code"], s.get("body"), s.get("status"), s.get("meta")) for s in signals))
    return {"eventId": event_id, "eventType": "VEHICLE_STATE",
            "data": {"vehicle": _vehicle(connection, attributes), "user": {"id": connection.user_id},
                     "signals": signals},
            "triggers": [], "meta": _meta(at, connection)}


def error_delivery(connection: Connection, error: SmartcarError, at: datetime) -> dict:
    event_id = "pull-error-" + _digest(connection.vehicle_id, error.status, error.type, error.code, f"{at:%Y-%m-%d}")
    return {"eventId": event_id, "eventType": "VEHICLE_ERROR",
            "data": {"vehicle": _vehicle(connection, {}), "user": {"id": connection.user_id},
                     "errors": [error.as_vehicle_error()]},
            "triggers": [], "meta": _meta(at, connection)}


@dataclass
class RoundReport:
    started_at: datetime
    listed: int = 0
    newly_connected: list[str] = field(default_factory=list)
    disconnected: list[str] = field(default_factory=list)  # noticed this round
    pulled: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # vehicle -> TYPE:CODE, landed as VEHICLE_ERROR
    skipped_recent: list[str] = field(default_factory=list)
    over_budget: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    deferred: dict[str, float | None] = field(default_factory=dict)  # vehicle -> hours since its last pull
    files: list[Path] = field(default_factory=list)
    requests: int = 0
    bucket_left: float = 0.0
    stopped: str | None = None  # why the round ended early

    def lines(self) -> list[str]:
        out = [f"connections: {self.listed} listed, {len(self.newly_connected)} new, "
               f"{len(self.disconnected)} disconnected since the last round",
               f"pulled {len(self.pulled)} vehicle(s) ({len(self.errors)} answered with an error, landed as "
               f"VEHICLE_ERROR) in {self.requests} request(s); {len(self.files)} landing file(s); "
               f"bucket left ~{self.bucket_left:.0f}"]
        if self.skipped_recent:
            out.append(f"skipped {len(self.skipped_recent)} pulled within their interval")
        if self.over_budget:
            out.append(f"skipped {len(self.over_budget)} over this month's call budget: {_few(self.over_budget)}")
        if self.blocked:
            out.append(f"skipped {len(self.blocked)} that Smartcar asked to wait (retry-after, request limit): "
                       f"{_few(self.blocked)}")
        if self.deferred:
            stale = [h for h in self.deferred.values() if h is not None]
            never = len(self.deferred) - len(stale)
            oldest = f", the stalest pulled {max(stale):.1f} h ago" if stale else ""
            out.append(f"deferred {len(self.deferred)} due vehicle(s) to later rounds: the application's request "
                       f"bucket is empty ({never} never pulled{oldest}): {_few(list(self.deferred))}")
        for vehicle, error in sorted(self.errors.items())[:20]:
            out.append(f"  {vehicle}: {error}")
        if self.stopped:
            out.append(f"stopped: {self.stopped}")
        return out

    def metadata(self) -> dict:
        return {"listed": self.listed, "newly_connected": len(self.newly_connected),
                "disconnected": len(self.disconnected), "pulled": len(self.pulled), "errors": len(self.errors),
                "skipped_recent": len(self.skipped_recent), "over_budget": len(self.over_budget),
                "blocked": len(self.blocked), "deferred": len(self.deferred), "requests": self.requests,
                "landing_files": len(self.files), "bucket_left": round(self.bucket_left, 1),
                "stopped": self.stopped or ""}


def _few(ids: list[str], n: int = 10) -> str:
    return ", ".join(ids[:n]) + (f" and {len(ids) - n} more" if len(ids) > n else "")


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


class _Records:
    """The connection records, by vehicle id, as plain dicts while a round runs."""

    def __init__(self, layout: SmartcarLayout):
        self.layout = layout
        self.rows: dict[str, dict] = {r["vehicle_id"]: r for r in read_connections(layout).to_dicts()}

    def save(self) -> None:
        write_connections(self.layout, pl.DataFrame(list(self.rows.values()), schema=CONNECTIONS_SCHEMA))

    def reconcile(self, listed: list[Connection], now: datetime, report: RoundReport) -> None:
        seen = set()
        for c in listed:
            seen.add(c.vehicle_id)
            row = self.rows.get(c.vehicle_id)
            created = _parse_time(c.connected_at)
            # A user who connects again gets a new connection: that ends a disconnection.
            renewed = row is not None and bool((c.connection_id and c.connection_id != row["connection_id"])
                                               or (created and created != row["connected_at"]))
            if row is None or (row["status"] == "DISCONNECTED" and (row["disconnect_reason"] == "UNLISTED" or renewed)):
                report.newly_connected.append(c.vehicle_id)
                row = {**dict.fromkeys(CONNECTIONS_SCHEMA.names()), **(row or {}), "vehicle_id": c.vehicle_id,
                       "status": "CONNECTED", "connected_at": created or now,
                       "disconnected_at": None, "disconnect_reason": None, "blocked_until": None}
                self.rows[c.vehicle_id] = row
            row.update(user_id=c.user_id, connection_id=c.connection_id, make=c.make, model=c.model, year=c.year,
                       mode=c.mode)
            if row["status"] == "CONNECTED":
                row["last_seen_connected_at"] = now
        for vehicle_id, row in self.rows.items():
            if vehicle_id not in seen and row["status"] == "CONNECTED":
                row.update(status="DISCONNECTED", disconnected_at=now, disconnect_reason="UNLISTED")
                report.disconnected.append(vehicle_id)

    def due(self, now: datetime) -> list[VehicleDue]:
        month = month_key(now)
        return [VehicleDue(r["vehicle_id"], r["last_pulled_at"],
                           r["calls_this_month"] if r["budget_month"] == month else 0, r["blocked_until"])
                for r in self.rows.values() if r["status"] == "CONNECTED"]

    def count_calls(self, vehicle_id: str, calls: int, now: datetime) -> None:
        row = self.rows[vehicle_id]
        if row["budget_month"] != month_key(now):
            row["budget_month"], row["calls_this_month"] = month_key(now), 0
        row["calls_this_month"] = (row["calls_this_month"] or 0) + calls


@dataclass
class _VehicleRead:
    """One vehicle's read, as a worker thread did it: signals, or the error Smartcar gave."""
    due: VehicleDue
    connection: Connection
    at: datetime
    calls: int = 0
    signals: list = field(default_factory=list)
    attributes: dict = field(default_factory=dict)
    error: SmartcarError | None = None
    not_started: bool = False  # the round stopped before this vehicle (or ran out of bucket in it)


def _read_vehicle(client: SmartcarClient, connection: Connection, due: VehicleDue, stop: threading.Event,
                  clock: Callable[[], datetime]) -> _VehicleRead:
    """Read one vehicle's signals (in a worker thread). Sets `stop` when no other vehicle
    should start: the bucket is empty, Smartcar limits the application, or it refuses the
    credentials."""
    read = _VehicleRead(due, connection, clock())
    if stop.is_set():
        read.not_started = True
        return read
    before = client.requests_sent_by_this_thread
    try:
        read.signals, read.attributes = client.signals(connection.vehicle_id, connection.user_id)
    except GateClosed:
        stop.set()
        read.not_started = True
    except SmartcarError as error:  # CredentialsRejected too: the main thread raises it
        read.error = error
        if app_rate_limited(error) or isinstance(error, CredentialsRejected):
            stop.set()
    read.calls = client.requests_sent_by_this_thread - before
    return read


def load_bucket(layout: SmartcarLayout, bucket: RequestBucket) -> RequestBucket:
    path = layout.bucket_file
    return bucket.restore(json.loads(path.read_text()) if path.exists() else None)


def save_bucket(layout: SmartcarLayout, bucket: RequestBucket) -> None:
    write_text_atomic(json.dumps(bucket.to_json()), layout.bucket_file)


def without_erased_connections(layout: SmartcarLayout, listed: list[Connection]) -> list[Connection]:
    """The connections of vehicles (and users) not erased: an erased vehicle is neither pulled
    nor recorded, even while Smartcar still lists its connection."""
    record = ErasedRecord(layout.lake.root)
    vehicles = record.erased_among(VEHICLE, [c.vehicle_id for c in listed])
    users = record.erased_among(USER, [c.user_id for c in listed if c.user_id])
    return [c for c in listed if c.vehicle_id not in vehicles and c.user_id not in users]


def pull_round(client: SmartcarClient, landing: Path, layout: SmartcarLayout, limits: Limits,
               bucket: RequestBucket, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> RoundReport:
    """One round. Raises CredentialsRejected (after saving what the round did) when Smartcar
    refuses the application's credentials; every other error stays with its vehicle."""
    now = clock()
    report = RoundReport(started_at=now)
    records = _Records(layout)
    load_bucket(layout, bucket)
    client.gate = bucket
    sent_before = client.requests_sent
    lines: list[str] = []

    def flush() -> None:
        if lines:
            report.files.append(write_landing_file(landing, dated_name(SOURCE), lines))
            lines.clear()
        records.save()
        save_bucket(layout, bucket)

    try:
        try:
            listed = list(client.connections())
        except GateClosed:
            report.stopped = "the application's request bucket is empty: connections not listed; try later"
            return report
        except SmartcarError as error:
            if not app_rate_limited(error):
                raise
            bucket.level = 0.0  # Smartcar's bucket is emptier than our model of it
            report.stopped = f"Smartcar's application rate limit (retry after {error.retry_after or '?'} s): " \
                             "connections not listed; try later"
            return report
        report.listed = len(listed)
        listed = without_erased_connections(layout, listed)
        records.reconcile(listed, now, report)
        by_id = {c.vehicle_id: c for c in listed}
        plan = plan_round(records.due(now), limits, now, int(bucket.refill()))
        report.skipped_recent, report.over_budget, report.blocked = plan.recent, plan.over_budget, plan.blocked
        app_limited = False
        not_started: list[VehicleDue] = []
        with ThreadPoolExecutor(max_workers=max(1, limits.max_in_flight), thread_name_prefix="smartcar-pull") as pool:
            stop = threading.Event()  # set when no further vehicle may start this round
            # `map` gives the reads back in plan order, however they overlap: the lines, files
            # and records are those of a sequential round.
            for read in pool.map(lambda due: _read_vehicle(client, by_id[due.vehicle_id], due, stop, clock),
                                 plan.pull):
                due, at, error = read.due, read.at, read.error
                row = records.rows[due.vehicle_id]
                if read.calls:
                    records.count_calls(due.vehicle_id, read.calls, at)
                if read.not_started or (error is not None and app_rate_limited(error)):
                    not_started.append(due)
                    app_limited = app_limited or (error is not None and app_rate_limited(error))
                    continue
                if isinstance(error, CredentialsRejected):
                    raise error
                if error is not None:
                    if error.status == 429:  # the vehicle's own rate limit: wait as told
                        row["blocked_until"] = at + timedelta(seconds=error.retry_after or 60)
                        report.blocked.append(due.vehicle_id)
                        continue
                    if error.status == 430 and error.code == "VEHICLE_REQUEST_LIMIT":
                        row["blocked_until"] = _next_month(at)
                    lines.append(json.dumps(error_delivery(read.connection, error, at)) + "\n")
                    outcome = f"{error.type}:{error.code}" if error.code else error.type
                    report.errors[due.vehicle_id] = outcome
                    row.update(last_pulled_at=at, last_outcome=outcome)
                    if access_lost(error):
                        row.update(status="DISCONNECTED", disconnected_at=at, disconnect_reason=outcome)
                        report.disconnected.append(due.vehicle_id)
                else:
                    lines.append(json.dumps(state_delivery(
                        read.connection, [s.as_delivery_signal() for s in read.signals], read.attributes, at)) + "\n")
                    row.update(last_pulled_at=at, last_outcome="SIGNALS", blocked_until=None)
                report.pulled.append(due.vehicle_id)
                if len(lines) >= FILE_VEHICLES:
                    flush()
        if app_limited:
            bucket.level = 0.0  # Smartcar's bucket is emptier than our model of it
            report.stopped = "Smartcar's application rate limit: the rest of the round is deferred"
        deferred = not_started + list(plan.deferred)
        report.deferred = {v.vehicle_id: (now - v.last_pulled_at).total_seconds() / 3600 if v.last_pulled_at else None
                           for v in deferred}
    except CredentialsRejected as error:
        report.stopped = f"Smartcar refused the application's credentials ({error}); check SMARTCAR_CLIENT_ID " \
                         "and SMARTCAR_CLIENT_SECRET"
        raise
    finally:
        flush()
        report.requests = client.requests_sent - sent_before
        report.bucket_left = bucket.level
    return report


def _next_month(at: datetime) -> datetime:
    return datetime(at.year + at.month // 12, at.month % 12 + 1, 1, tzinfo=UTC)
