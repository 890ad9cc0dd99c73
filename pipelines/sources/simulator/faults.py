"""Faults: the plan (which vehicle gets which fault, and when, decided up front) and the
stages that apply it to a day's readings (odometer faults, signal faults, late and duplicate picks)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import catalog as C
from .encode import REVOKED_STATUS, TRANSIENT_STATUS
from .fleet import DAY, Fleet

ODOMETER_KINDS = ("SPIKE", "ROLLBACK", "GAP", "UNIT_CHANGE", "BAD_VALUE")


@dataclass
class FaultPlan:
    enabled: bool
    spike: dict = field(default_factory=dict)  # v -> [t, km, applied]
    rollback: dict = field(default_factory=dict)  # v -> (t, km)
    gap: dict = field(default_factory=dict)  # v -> (t_start, t_end)
    unit_change: dict = field(default_factory=dict)  # v -> t
    bad_values: list = field(default_factory=list)  # [v, t, signal, raw value, raw unit, applied]
    revoked: dict = field(default_factory=dict)  # v -> (t, signal)
    vehicle_errors: list = field(default_factory=list)  # (v, t, error index, resolved_t | None)
    malformed_files: dict = field(default_factory=dict)  # (day, window) -> count
    dup_rate: float = 0.0
    late_rate: float = 0.0
    out_of_order_rate: float = 0.0
    transient_error_rate: float = 0.0

    @property
    def odometer_fault_vehicles(self) -> set:
        vehicles = set(self.spike) | set(self.rollback) | set(self.gap) | set(self.unit_change)
        vehicles |= {bad[0] for bad in self.bad_values if bad[2] == "odometer-traveleddistance"}
        return vehicles


def plan_faults(cfg, fleet: Fleet, rng: np.random.Generator) -> FaultPlan:
    if not cfg.faults:
        return FaultPlan(enabled=False)
    n = fleet.size
    t0, span = fleet.start_s, cfg.days * DAY
    plan = FaultPlan(enabled=True, dup_rate=0.01, late_rate=0.01, out_of_order_rate=0.1,
                     transient_error_rate=0.002)

    def when(lo: float, hi: float) -> float:
        return float(np.floor(t0 + rng.uniform(lo, hi) * span))

    # odometer faults: at most one per vehicle, on fewer than half the fleet (the rest stays clean)
    order = [int(x) for x in rng.permutation(n)]
    budget = max(0, (n - 1) // 2)
    wanted = [("SPIKE", max(1, round(0.04 * n))), ("ROLLBACK", max(1, round(0.02 * n))),
              ("GAP", max(1, round(0.03 * n)) if cfg.days >= 5 else 0),
              ("UNIT_CHANGE", 1), ("BAD_VALUE", max(1, round(0.02 * n)))]
    position = 0
    for kind, count in wanted:
        for _ in range(count):
            if position >= len(order) or budget <= 0:
                break
            vehicle = order[position]
            if kind == "UNIT_CHANGE":
                # needs a vehicle that reports km
                k = next((j for j in range(position, len(order)) if not fleet.odometer_in_miles[order[j]]), None)
                if k is None:
                    continue
                order[position], order[k] = order[k], order[position]
                vehicle = order[position]
                plan.unit_change[vehicle] = when(0.3, 0.7)
            elif kind == "SPIKE":
                plan.spike[vehicle] = [when(0.1, 0.9), float(rng.uniform(3000, 9000)), False]
            elif kind == "ROLLBACK":
                plan.rollback[vehicle] = (when(0.25, 0.75), float(rng.uniform(2000, 10000)))
            elif kind == "GAP":
                length = rng.uniform(3.1, 5.0) * DAY
                length = min(length, span - 1.5 * DAY)
                if length < 3.05 * DAY:
                    continue
                start = t0 + DAY * 0.6 + rng.uniform(0, 1) * (span - 1.2 * DAY - length)
                plan.gap[vehicle] = (float(np.floor(start)), float(np.floor(start + length)))
            elif kind == "BAD_VALUE":
                raw = ["STR", None][int(rng.integers(0, 2))]
                unit = None if raw else "furlongs"
                plan.bad_values.append([vehicle, when(0.1, 0.9), "odometer-traveleddistance", raw, unit, False])
            position += 1
            budget -= 1

    # non-odometer faults, on any vehicle
    for vehicle in rng.choice(n, size=min(n, max(1, round(0.04 * n))), replace=False):
        signal = "location-preciselocation" if rng.random() < 0.7 else "wheel-tires"
        plan.revoked[int(vehicle)] = (when(0.2, 0.8), signal)
    for vehicle in rng.choice(n, size=min(n, max(2, round(0.06 * n))), replace=False):
        vehicle = int(vehicle)
        powertrain = int(fleet.powertrain[vehicle])
        options = ["lowvoltagebattery-stateofcharge", "wheel-tires"]
        if powertrain != C.ICE:
            options.append("tractionbattery-stateofcharge")
        if powertrain != C.BEV:
            options.append("internalcombustionengine-fuellevel")
        signal = options[int(rng.integers(0, len(options)))]
        if signal == "tractionbattery-stateofcharge":
            raw = ["180", "-5", "255"][int(rng.integers(0, 3))]
        elif signal == "internalcombustionengine-fuellevel":
            raw = '"%.1f"' % rng.uniform(10, 90)
        elif signal == "lowvoltagebattery-stateofcharge":
            raw = ["250", '"LOW"'][int(rng.integers(0, 2))]
        else:
            raw = '"%d"' % int(rng.integers(200, 260))
        plan.bad_values.append([vehicle, when(0.1, 0.9), signal, raw, None, False])
    for j, vehicle in enumerate(rng.choice(n, size=min(n, max(1, round(0.06 * n))), replace=False)):
        error_at = when(0.05, 0.9)
        resolved_at = (float(np.floor(error_at + rng.uniform(2, 30) * 3600)) if (j == 0 or rng.random() < 0.4)
                       else None)
        if resolved_at is not None and resolved_at >= fleet.end_s - 60:
            resolved_at = None
        plan.vehicle_errors.append((int(vehicle), error_at, int(rng.integers(0, len(C.VEHICLE_ERRORS))),
                                    resolved_at))
    file_count = cfg.days * cfg.files_per_day
    for k in rng.choice(file_count, size=min(file_count, max(3, round(0.06 * file_count))), replace=True):
        key = (int(k) // cfg.files_per_day, int(k) % cfg.files_per_day)
        plan.malformed_files[key] = plan.malformed_files.get(key, 0) + 1
    return plan

# -- applying the plan to one day's readings ----------------------------------------------------

@dataclass
class AppliedFaults:
    """Fault bookkeeping carried from day to day: spikes still to place, faults already in the truth."""

    pending_spikes: dict  # vehicle -> [t, km, applied] of plan.spike not yet placed
    recorded: set = field(default_factory=set)  # (kind, vehicle) whose first reading is in the truth

    @classmethod
    def at_start(cls, plan: FaultPlan) -> AppliedFaults:
        return cls(pending_spikes=dict(plan.spike.items()))


@dataclass
class OdometerReport:
    reported_km: np.ndarray
    in_miles: np.ndarray
    spike_rows: list  # readings carrying a spike (kept in place: never late or duplicated)


def apply_odometer_faults(plan: FaultPlan, applied: AppliedFaults, fleet: Fleet, vehicle: np.ndarray,
                          at: np.ndarray, odometer_km: np.ndarray, day_end: float, truth) -> OdometerReport:
    reported_km = odometer_km.copy()
    for faulty, (rolled_back_at, km) in plan.rollback.items():
        affected = (vehicle == faulty) & (at >= rolled_back_at)
        if affected.any():
            reported_km[affected] -= km
            if ("ROLLBACK", faulty) not in applied.recorded:
                i = int(np.argmax(affected))
                applied.recorded.add(("ROLLBACK", faulty))
                truth.fault(faulty, "ROLLBACK", at[i], f"odometer set back by {km:.1f} km",
                            odometer_km[i], odometer_km[i] - km)
    spike_rows = []
    for faulty, spike in list(applied.pending_spikes.items()):
        if spike[0] >= day_end:
            continue
        affected = np.nonzero((vehicle == faulty) & (at >= spike[0]))[0]
        if len(affected):
            i = int(affected[0])
            reported_km[i] += spike[1]
            spike_rows.append(i)
            truth.fault(faulty, "SPIKE", at[i], f"lone reading +{spike[1]:.1f} km", odometer_km[i],
                        odometer_km[i] + spike[1])
            del applied.pending_spikes[faulty]
    in_miles = fleet.odometer_in_miles[vehicle].copy()
    for faulty, changed_at in plan.unit_change.items():
        affected = (vehicle == faulty) & (at >= changed_at)
        if affected.any():
            in_miles |= affected
            if ("UNIT_CHANGE", faulty) not in applied.recorded:
                i = int(np.argmax(affected))
                applied.recorded.add(("UNIT_CHANGE", faulty))
                truth.fault(faulty, "UNIT_CHANGE", at[i], f"odometer unit km -> {fleet.mile_spelling[faulty]}",
                            odometer_km[i], odometer_km[i])
    return OdometerReport(reported_km, in_miles, spike_rows)


def record_gap_edges(plan: FaultPlan, timeline, day_start: float, day_end: float, truth) -> None:
    """The true odometer where a gap starts and ends (the truth's GAP rows need both)."""
    for faulty, (gap_start, gap_end) in plan.gap.items():
        for edge, edge_at in (("start", gap_start), ("end", gap_end)):
            if day_start <= edge_at < day_end:
                truth.gap_probe(faulty, edge, edge_at, float(timeline.odometer_at([faulty], [edge_at])[0]))


# payload column a bad value replaces, and whether the signal is a slow one
BAD_VALUE_TARGET = {
    "odometer-traveleddistance": ("odometer", False),
    "tractionbattery-stateofcharge": ("soc", False),
    "internalcombustionengine-fuellevel": ("fuel", False),
    "lowvoltagebattery-stateofcharge": ("low_voltage_soc", True),
    "wheel-tires": ("tire_front_left", True),
}
OVERRIDDEN_VALUES = ("odometer", "odometer_unit", "soc", "fuel", "low_voltage_soc", "tire_front_left")
FAILING_SIGNALS = ("location", "tires", "soc", "fuel", "low_voltage_soc")


@dataclass
class SignalFaults:
    """Per reading: raw text replacing a value (None: none), error status JSON of a signal (None: success)."""

    overrides: dict  # OVERRIDDEN_VALUES -> object array
    errors: dict  # FAILING_SIGNALS -> object array
    transient_errors: int

    @property
    def error_count(self) -> int:
        return self.transient_errors + int(sum((status == REVOKED_STATUS).sum() for status in self.errors.values()))


def apply_signal_faults(plan: FaultPlan, applied: AppliedFaults, fleet: Fleet, vehicle: np.ndarray,
                        at: np.ndarray, slow: np.ndarray, odometer_value: np.ndarray, odometer_km: np.ndarray,
                        event_id: np.ndarray, day_end: float, truth, rng: np.random.Generator) -> SignalFaults:
    """Revoked permissions, bad values and transient signal errors."""
    count = len(vehicle)
    overrides = {name: np.full(count, None, dtype=object) for name in OVERRIDDEN_VALUES}
    errors = {name: np.full(count, None, dtype=object) for name in FAILING_SIGNALS}
    for faulty, (revoked_at, signal) in plan.revoked.items():
        affected = (vehicle == faulty) & (at >= revoked_at)
        if affected.any():
            errors["location" if signal == "location-preciselocation" else "tires"][affected] = REVOKED_STATUS
            if ("REVOKED", faulty) not in applied.recorded:
                applied.recorded.add(("REVOKED", faulty))
                truth.fault(faulty, "PERMISSION_REVOKED", revoked_at, f"{signal} permission revoked by the owner")
    for bad in plan.bad_values:
        faulty, bad_at, signal, raw, unit, done = bad
        if done or bad_at >= day_end:
            continue
        target, slow_signal = BAD_VALUE_TARGET[signal]
        candidates = (vehicle == faulty) & (at >= bad_at)
        if slow_signal:
            candidates &= slow
        if signal == "wheel-tires":
            # a revoked tyre permission leaves no value to spoil
            candidates &= np.array([status is None for status in errors["tires"]], dtype=bool)
        rows = np.nonzero(candidates)[0]
        if not len(rows):
            continue
        i = int(rows[0])
        bad[5] = True
        if unit is not None:
            overrides["odometer_unit"][i] = unit
            detail = f"{signal}: unknown unit {unit!r}"
        else:
            if raw == "STR":
                raw = '"%s"' % odometer_value[i]
            overrides[target][i] = raw
            detail = f"{signal}: bad value {raw}"
        truth.fault(faulty, "BAD_VALUE", at[i], detail, event_id=str(event_id[i]),
                    odometer_before_km=odometer_km[i] if signal.startswith("odometer") else None)
    transient_errors = 0
    if plan.enabled and count:
        has_battery = fleet.powertrain != C.ICE
        has_engine = fleet.powertrain != C.BEV
        for i in np.nonzero(rng.random(count) < plan.transient_error_rate)[0]:
            v = int(vehicle[i])
            options = (["location"] + (["soc"] if has_battery[v] else []) + (["fuel"] if has_engine[v] else []))
            if slow[i]:
                options += ["low_voltage_soc", "tires"]
            signal = options[int(rng.integers(0, len(options)))]
            # a signal already carrying a bad value keeps it
            overridden = {"soc": "soc", "fuel": "fuel", "low_voltage_soc": "low_voltage_soc",
                          "tires": "tire_front_left"}.get(signal)
            if errors[signal][i] is None and not (overridden and overrides[overridden][i] is not None):
                errors[signal][i] = TRANSIENT_STATUS
                transient_errors += 1
    return SignalFaults(overrides, errors, transient_errors)


@dataclass
class Redeliveries:
    late: np.ndarray  # bool per reading: lands in a later day's file instead
    late_day: np.ndarray  # the day it lands on
    duplicate: np.ndarray  # bool per reading: also re-sent later
    delivered_ms: np.ndarray  # late ones moved to their later delivery


def choose_redeliveries(plan: FaultPlan, cfg, fleet: Fleet, day: int, spike_rows: list,
                        delivered_ms: np.ndarray, rng: np.random.Generator) -> Redeliveries:
    """Late and duplicate VEHICLE_STATE deliveries."""
    count = len(delivered_ms)
    late = np.zeros(count, dtype=bool)
    duplicate = np.zeros(count, dtype=bool)
    late_day = np.zeros(count, dtype=np.int64)
    if plan.enabled and count:
        late = rng.random(count) < plan.late_rate
        duplicate = (~late) & (rng.random(count) < plan.dup_rate)
        days_late = rng.integers(1, 6, count)
        late_day = np.minimum(day + days_late, cfg.days - 1)
        late &= late_day > day  # on the last day there is no later day to land in
        for i in spike_rows:  # keep the spike readings in place
            late[i] = duplicate[i] = False
        late_delivered_ms = ((fleet.start_s + late_day * DAY + rng.uniform(0, DAY - 60, count)) * 1000).astype(np.int64)
        delivered_ms = np.where(late, late_delivered_ms, delivered_ms)
    return Redeliveries(late, late_day, duplicate, delivered_ms)
