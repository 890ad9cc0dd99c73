"""The readings of one day: when each vehicle reports, and its true state at that moment.

A vehicle reports on its grid (every ``interval_minutes`` with jitter while awake, every
1-2 h while asleep) and shortly after each event of its activity (arrival, plug, charge
start and stop, unplug). Gaps of the fault plan remove readings.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .activity import (CHARGING, DRIVING, ENERGY_ADDED, EVENT_ARRIVAL, EVENT_CABLE, EVENT_CHARGING, FUEL,
                       HEADING, LAT, LON, MODE, ODOMETER, PLUGGED, POWER, SOC)
from .encode import TRIGGER_CABLE, TRIGGER_CHARGING, TRIGGER_ODOMETER
from .faults import FaultPlan
from .fleet import DAY, Fleet
from .timeline import DayTimeline

MISSING_GRID_READING_SHARE = 0.015


@dataclass
class Readings:
    """One row per reading, sorted by vehicle then time."""

    vehicle: np.ndarray
    at: np.ndarray  # epoch s, whole seconds
    event_trigger: np.ndarray  # encode.TRIGGER_* of an event reading; -1 for grid readings

    def __len__(self) -> int:
        return len(self.vehicle)


@dataclass
class TrueState:
    """What the vehicle truly is at each reading."""

    odometer_km: np.ndarray
    soc_pct: np.ndarray
    fuel_pct: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    energy_added_kwh: np.ndarray
    power_kw: np.ndarray
    heading: np.ndarray
    driving: np.ndarray
    charging: np.ndarray
    plugged: np.ndarray

    @property
    def awake(self) -> np.ndarray:
        return self.driving | self.charging


def reading_times(cfg, fleet: Fleet, timeline: DayTimeline, events_by_vehicle: list, plan: FaultPlan,
                  day_start: float, rng: np.random.Generator) -> Readings:
    day_end = day_start + DAY
    interval = cfg.interval_minutes * 60.0
    jitter = min(0.2 * interval, 90.0)
    # grid slots are counted from the start of the run, so a vehicle's cadence carries over midnight
    first_slot = int(math.floor((day_start - fleet.start_s) / interval)) - 1
    slot_count = int(math.ceil(DAY / interval)) + 3
    slots = first_slot + np.arange(slot_count)
    grid_at = fleet.start_s + fleet.grid_offset_s[:, None] + slots[None, :] * interval
    grid_at = np.floor(grid_at + rng.uniform(-jitter, jitter, grid_at.shape))
    grid_vehicle = np.broadcast_to(np.arange(fleet.size)[:, None], grid_at.shape)
    grid_slot = np.broadcast_to(slots[None, :], grid_at.shape)
    in_day = (grid_at >= day_start) & (grid_at < day_end)
    grid_vehicle, grid_at, grid_slot = grid_vehicle[in_day], grid_at[in_day], grid_slot[in_day]
    mode = timeline.keyframes[timeline.keyframe_before(timeline.position(grid_vehicle, grid_at)), MODE]
    awake = (mode == DRIVING) | (mode == CHARGING)
    asleep_slot = (grid_slot + fleet.asleep_phase[grid_vehicle]) % fleet.asleep_keep_every[grid_vehicle] == 0
    keep = awake | asleep_slot
    keep &= rng.random(len(grid_at)) >= MISSING_GRID_READING_SHARE
    grid_vehicle, grid_at = grid_vehicle[keep], grid_at[keep]
    grid_trigger = np.full(len(grid_at), -1, dtype=np.int64)

    event_vehicle = np.fromiter((v for v in range(fleet.size) for _ in events_by_vehicle[v]), dtype=np.int64)
    event_at = np.floor(np.fromiter((event[0] for events in events_by_vehicle for event in events),
                                    dtype=np.float64))
    event_kind = np.fromiter((event[1] for events in events_by_vehicle for event in events), dtype=np.int64)
    event_trigger = np.select([event_kind == EVENT_ARRIVAL, event_kind == EVENT_CABLE,
                               event_kind == EVENT_CHARGING],
                              [TRIGGER_ODOMETER, TRIGGER_CABLE, TRIGGER_CHARGING], -1)

    vehicle = np.concatenate([grid_vehicle, event_vehicle])
    at = np.concatenate([grid_at, event_at])
    trigger = np.concatenate([grid_trigger, event_trigger])
    keep = (at >= day_start) & (at < day_end)
    for gap_vehicle, (gap_start, gap_end) in plan.gap.items():
        keep &= ~((vehicle == gap_vehicle) & (at >= gap_start) & (at < gap_end))
    vehicle, at, trigger = vehicle[keep], at[keep], trigger[keep]
    order = np.lexsort((at, vehicle))
    return Readings(vehicle[order], at[order], trigger[order])


def true_state(timeline: DayTimeline, readings: Readings) -> TrueState:
    position = timeline.position(readings.vehicle, readings.at)
    keyframe = timeline.keyframes[timeline.keyframe_before(position)]
    mode = keyframe[:, MODE]
    charging = mode == CHARGING
    return TrueState(
        odometer_km=timeline.interpolate(position, ODOMETER),
        soc_pct=timeline.interpolate(position, SOC),
        fuel_pct=timeline.interpolate(position, FUEL),
        lat=timeline.interpolate(position, LAT),
        lon=timeline.interpolate(position, LON),
        energy_added_kwh=timeline.interpolate(position, ENERGY_ADDED),
        power_kw=keyframe[:, POWER],
        heading=keyframe[:, HEADING],
        driving=mode == DRIVING,
        charging=charging,
        plugged=(mode == PLUGGED) | charging,
    )


def first_in_slow_slot(fleet: Fleet, readings: Readings, last_slow_slot: np.ndarray) -> np.ndarray:
    """Which readings carry the slow signals (tyres, 12 V, DTCs, oil, capacity): the first one of
    each vehicle's 3-6 h slot. ``last_slow_slot`` (per vehicle) carries over to the next day."""
    vehicle = readings.vehicle
    slot = np.floor((readings.at - fleet.slow_phase_s[vehicle]) / fleet.slow_period_s[vehicle]).astype(np.int64)
    previous_slot = np.empty(len(readings), dtype=np.int64)
    if len(readings):
        previous_slot[1:] = slot[:-1]
        first_of_vehicle = np.ones(len(readings), dtype=bool)
        first_of_vehicle[1:] = vehicle[1:] != vehicle[:-1]
        previous_slot[first_of_vehicle] = last_slow_slot[vehicle[first_of_vehicle]]
        last_of_vehicle = np.ones(len(readings), dtype=bool)
        last_of_vehicle[:-1] = vehicle[1:] != vehicle[:-1]
        last_slow_slot[vehicle[last_of_vehicle]] = slot[last_of_vehicle]
    return slot != previous_slot


@dataclass
class DeliveryTimes:
    """Milliseconds since the epoch: the car's own time, Smartcar's retrieval, the webhook delivery."""

    oem_updated_ms: np.ndarray
    retrieved_ms: np.ndarray
    delivered_ms: np.ndarray


def delivery_times(fleet: Fleet, readings: Readings, state: TrueState, rng: np.random.Generator) -> DeliveryTimes:
    count = len(readings)
    lag_s = np.where(state.awake, rng.uniform(2.0, 40.0, count), rng.uniform(20.0, 600.0, count))
    # makes without an oemUpdatedAt on the odometer report it as it is retrieved
    retrieved_on_demand = np.array(["odometer-traveleddistance" in signals for signals in fleet.without_oem_time])
    lag_s = np.where(retrieved_on_demand[readings.vehicle], rng.uniform(0.5, 4.0, count), lag_s)
    oem_updated_ms = (readings.at * 1000.0).astype(np.int64)
    retrieved_ms = oem_updated_ms + (lag_s * 1000.0).astype(np.int64)
    delivered_ms = retrieved_ms + rng.integers(200, 3000, count)
    return DeliveryTimes(oem_updated_ms, retrieved_ms, delivered_ms)
