"""Wear of the consumables: engine oil (carried from day to day), tyres and the 12 V battery.

Tyres and the 12 V battery are closed-form functions of time; the oil depends on the
distance driven and on oil changes, so its reference point is carried day to day.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fleet import DAY, Fleet
from .timeline import DayTimeline

OIL_DUE_PCT = 15.0
# An owner who changes oil does it on a given day with this chance, once below their threshold.
OIL_CHANGE_DAILY_CHANCE = 0.5


def tire_pressure(fleet: Fleet, vehicle: np.ndarray, at: np.ndarray) -> np.ndarray:
    """True tyre pressures (kPa), shape (len(at), 4), for vehicles ``vehicle`` at times ``at``."""
    at = np.asarray(at, dtype=float)[:, None]
    base = fleet.tire_baseline_kpa[vehicle]
    slow_loss = fleet.tire_seep_kpa_per_day[vehicle]
    leak = fleet.tire_leak_kpa_per_day[vehicle]
    leak_start = fleet.tire_leak_start_s[vehicle]
    reinflated_at = fleet.tire_reinflated_s[vehicle]
    after_reinflation = at >= reinflated_at
    reference = np.where(after_reinflation, reinflated_at, fleet.start_s)
    leak_from = np.where(after_reinflation, np.maximum(reinflated_at, leak_start), leak_start)
    leak_days = np.where(np.isfinite(leak_from),
                         np.maximum(0.0, at - np.where(np.isfinite(leak_from), leak_from, 0.0)), 0.0) / DAY
    return base - slow_loss * (at - reference) / DAY - leak * leak_days


def low_voltage_soc(fleet: Fleet, vehicle: np.ndarray, at: np.ndarray) -> np.ndarray:
    """True 12 V state of charge (%), without sensor noise."""
    days = (np.asarray(at, dtype=float) - fleet.start_s) / DAY
    daily_swing = 1.5 * np.sin(2 * np.pi * (days % 1.0))
    return np.clip(fleet.low_voltage_baseline_pct[vehicle] + fleet.low_voltage_rate_pct_per_day[vehicle] * days
                   + daily_swing, 0.0, 100.0)


@dataclass
class EngineOil:
    """Oil life carried from day to day: the gauge reads ``percent_at_reference`` minus the
    share of ``oil_life_km`` driven since ``odometer_at_reference``."""

    percent_at_reference: np.ndarray
    odometer_at_reference: np.ndarray
    change_below: np.ndarray  # nan: no (further) oil change in the window

    @classmethod
    def at_start(cls, fleet: Fleet) -> EngineOil:
        return cls(fleet.start_oil_life_pct.copy(), fleet.odometer_start_km.copy(), fleet.oil_change_below_pct.copy())


@dataclass
class OilChanges:
    """The day's oil changes (decided at the start of the day, done later in the day)."""

    changed: np.ndarray  # bool per vehicle
    changed_at: np.ndarray  # epoch s, inf where unchanged
    odometer_at_change: np.ndarray  # the new reference odometer (the old one where unchanged)
    percent_at_day_start: np.ndarray


def plan_oil_changes(oil: EngineOil, fleet: Fleet, timeline: DayTimeline, day_start: float,
                     odometer_at_day_start: np.ndarray, rng: np.random.Generator) -> OilChanges:
    percent_at_day_start = (oil.percent_at_reference
                            - (odometer_at_day_start - oil.odometer_at_reference) / fleet.oil_life_km * 100.0)
    changed_at = np.full(fleet.size, np.inf)
    due = (~np.isnan(oil.change_below)) & (percent_at_day_start < np.nan_to_num(oil.change_below, nan=-1.0))
    changed = due & (rng.random(fleet.size) < OIL_CHANGE_DAILY_CHANCE)
    changed_at[changed] = np.floor(day_start + rng.uniform(8.0, 18.0, int(changed.sum())) * 3600.0)
    odometer_at_change = np.where(
        changed, timeline.odometer_at(np.arange(fleet.size), np.where(changed, changed_at, day_start)),
        oil.odometer_at_reference)
    oil.change_below[changed] = np.nan  # one oil change per owner
    return OilChanges(changed, changed_at, odometer_at_change, percent_at_day_start)


def oil_life_at(oil: EngineOil, changes: OilChanges, fleet: Fleet, vehicle: np.ndarray, at: np.ndarray,
                odometer_km: np.ndarray) -> np.ndarray:
    """The oil life gauge (%) at readings ``(vehicle, at)``, with the day's changes applied."""
    after_change = at >= changes.changed_at[vehicle]
    life_km = fleet.oil_life_km[vehicle]
    percent = np.where(after_change, 100.0 - (odometer_km - changes.odometer_at_change[vehicle]) / life_km * 100.0,
                       oil.percent_at_reference[vehicle]
                       - (odometer_km - oil.odometer_at_reference[vehicle]) / life_km * 100.0)
    return np.clip(percent, 0.0, 100.0)


def end_oil_day(oil: EngineOil, changes: OilChanges, fleet: Fleet, timeline: DayTimeline, day: int,
                odometer_at_day_end: np.ndarray, truth) -> EngineOil:
    """Record the day's oil changes and due crossings in the truth; the oil state for tomorrow."""
    before_change = (oil.percent_at_reference
                     - (odometer_at_day_end - oil.odometer_at_reference) / fleet.oil_life_km * 100.0)
    after_change = 100.0 - (odometer_at_day_end - changes.odometer_at_change) / fleet.oil_life_km * 100.0
    percent_at_day_end = np.where(changes.changed, after_change, before_change)
    for vehicle in np.nonzero(changes.changed)[0]:
        truth.oil_reset(int(vehicle), float(changes.changed_at[vehicle]),
                        float(changes.odometer_at_change[vehicle]))
    percent_at_day_start = np.where(changes.changed, 100.0, changes.percent_at_day_start)
    crossed_due = ((~np.isnan(percent_at_day_end)) & (percent_at_day_start > OIL_DUE_PCT)
                   & (percent_at_day_end <= OIL_DUE_PCT))
    for vehicle in np.nonzero(crossed_due)[0]:
        vehicle = int(vehicle)
        if changes.changed[vehicle]:
            due_odometer = (changes.odometer_at_change[vehicle]
                            + (100.0 - OIL_DUE_PCT) / 100.0 * fleet.oil_life_km[vehicle])
        else:
            due_odometer = (oil.odometer_at_reference[vehicle]
                            + (oil.percent_at_reference[vehicle] - OIL_DUE_PCT) / 100.0 * fleet.oil_life_km[vehicle])
        truth.oil_cross(vehicle, timeline.first_reach(vehicle, float(due_odometer)), float(due_odometer))
    # Unclipped: the gauge stops at 0 %, but the due time and odometer extrapolate the
    # oil's real wear (truth clips only the value it reports).
    truth.oil_end_of_day(day, percent_at_day_end)
    return EngineOil(np.where(changes.changed, 100.0, oil.percent_at_reference),
                     np.where(changes.changed, changes.odometer_at_change, oil.odometer_at_reference),
                     oil.change_below)
