"""Smartcar's limits as the pull models them, and the plan of one round under them.

- The application bucket: `capacity` requests, refilled at `refill_per_minute`. Smartcar
  answers 429 when it is empty; the pull keeps its own count (persisted between rounds) so
  that it does not send a request it knows would be refused.
- A monthly call budget per vehicle (the plan's billing limit, answered with 430 when
  exceeded): a vehicle that has used it is not pulled again this UTC month, and the rest of
  the budget is spread over the rest of the month.
- A minimum interval between pulls of one vehicle (Smartcar advises 30 minutes).
- A vehicle that Smartcar told to wait (429 `retry-after`, or a 430 request limit) is not
  pulled before then.
- At most `max_in_flight` vehicles are read at once.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


@dataclass
class RequestBucket:
    capacity: float = 120.0
    refill_per_minute: float = 2.0
    level: float = 120.0
    updated_at: float = 0.0  # epoch seconds of `level`
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)

    def refill(self) -> float:
        now = self.clock()
        if self.updated_at:
            self.level = min(self.capacity, self.level + (now - self.updated_at) / 60.0 * self.refill_per_minute)
        else:
            self.level = min(self.level, self.capacity)
        self.updated_at = now
        return self.level

    def take(self) -> bool:
        if self.refill() < 1.0:
            return False
        self.level -= 1.0
        return True

    def to_json(self) -> dict:
        return {"level": self.level, "updated_at": self.updated_at}

    def restore(self, saved: dict | None) -> RequestBucket:
        if saved:
            self.level, self.updated_at = float(saved["level"]), float(saved["updated_at"])
        return self


@dataclass(frozen=True)
class Limits:
    min_interval: timedelta = timedelta(minutes=30)
    monthly_calls_per_vehicle: int = 1500  # 30-minute polling for a 31-day month is 1,488 calls
    calls_per_pull: int = 1  # requests one vehicle's signals take (more if they span pages)
    # Vehicles read at once. Smartcar publishes no concurrency limit, only the bucket; a few
    # requests in flight hide the API's latency without bursting, and the bucket, the
    # budget and retry-after bound the round whatever this is.
    max_in_flight: int = 8


@dataclass(frozen=True)
class VehicleDue:
    """What the plan needs to know about one connected vehicle."""
    vehicle_id: str
    last_pulled_at: datetime | None = None
    calls_this_month: int = 0
    blocked_until: datetime | None = None


@dataclass(frozen=True)
class Plan:
    pull: list[VehicleDue]  # in the order to pull them: stalest first
    recent: list[str]  # pulled less than their interval ago
    over_budget: list[str]  # this month's call budget is used up
    blocked: list[str]  # Smartcar asked us to wait
    deferred: list[VehicleDue]  # due, but the bucket has no room for them this round


def month_key(at: datetime) -> str:
    return f"{at:%Y-%m}"


def _end_of_month(at: datetime) -> datetime:
    days = calendar.monthrange(at.year, at.month)[1]
    return datetime(at.year, at.month, days, tzinfo=UTC) + timedelta(days=1)


def interval_for(vehicle: VehicleDue, limits: Limits, now: datetime) -> timedelta:
    """The vehicle's interval this round: the minimum interval, or longer when the budget
    left would otherwise run out before the month does. `min_interval` 0 means "now"."""
    if limits.min_interval <= timedelta(0):
        return timedelta(0)
    left = limits.monthly_calls_per_vehicle - vehicle.calls_this_month
    paced = (_end_of_month(now) - now) / max(1, left // max(1, limits.calls_per_pull))
    return max(limits.min_interval, paced)


def plan_round(vehicles: list[VehicleDue], limits: Limits, now: datetime, available: int) -> Plan:
    """Which connected vehicles to pull now, given `available` requests in the bucket."""
    due, recent, over, blocked = [], [], [], []
    for v in vehicles:
        if v.calls_this_month + limits.calls_per_pull > limits.monthly_calls_per_vehicle:
            over.append(v.vehicle_id)
        elif v.blocked_until is not None and v.blocked_until > now:
            blocked.append(v.vehicle_id)
        elif v.last_pulled_at is not None and now - v.last_pulled_at < interval_for(v, limits, now):
            recent.append(v.vehicle_id)
        else:
            due.append(v)
    # Stalest first: never pulled, then the longest ago; ties by id, so a plan is repeatable.
    due.sort(key=lambda v: (v.last_pulled_at is not None, v.last_pulled_at or now, v.vehicle_id))
    room = max(0, available) // max(1, limits.calls_per_pull)
    return Plan(pull=due[:room], recent=recent, over_budget=over, blocked=blocked, deferred=due[room:])
