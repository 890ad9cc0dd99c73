"""The fault plan: which vehicle gets which fault, and when (decided up front)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import catalog as C
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
        s = set(self.spike) | set(self.rollback) | set(self.gap) | set(self.unit_change)
        s |= {b[0] for b in self.bad_values if b[2] == "odometer-traveleddistance"}
        return s


def plan_faults(cfg, fleet: Fleet, rng: np.random.Generator) -> FaultPlan:
    if not cfg.faults:
        return FaultPlan(enabled=False)
    n = fleet.n
    t0, span = fleet.t0, cfg.days * DAY
    p = FaultPlan(enabled=True, dup_rate=0.01, late_rate=0.01, out_of_order_rate=0.1,
                  transient_error_rate=0.002)

    def when(lo: float, hi: float) -> float:
        return float(np.floor(t0 + rng.uniform(lo, hi) * span))

    order = [int(x) for x in rng.permutation(n)]
    budget = max(0, (n - 1) // 2)
    wanted = [("SPIKE", max(1, round(0.04 * n))), ("ROLLBACK", max(1, round(0.02 * n))),
              ("GAP", max(1, round(0.03 * n)) if cfg.days >= 5 else 0),
              ("UNIT_CHANGE", 1), ("BAD_VALUE", max(1, round(0.02 * n)))]
    pos = 0
    for kind, count in wanted:
        for _ in range(count):
            if pos >= len(order) or budget <= 0:
                break
            v = order[pos]
            if kind == "UNIT_CHANGE":
                # needs a vehicle that reports km
                k = next((j for j in range(pos, len(order)) if not fleet.odo_miles[order[j]]), None)
                if k is None:
                    continue
                order[pos], order[k] = order[k], order[pos]
                v = order[pos]
                p.unit_change[v] = when(0.3, 0.7)
            elif kind == "SPIKE":
                p.spike[v] = [when(0.1, 0.9), float(rng.uniform(3000, 9000)), False]
            elif kind == "ROLLBACK":
                p.rollback[v] = (when(0.25, 0.75), float(rng.uniform(2000, 10000)))
            elif kind == "GAP":
                length = rng.uniform(3.1, 5.0) * DAY
                length = min(length, span - 1.5 * DAY)
                if length < 3.05 * DAY:
                    continue
                start = t0 + DAY * 0.6 + rng.uniform(0, 1) * (span - 1.2 * DAY - length)
                p.gap[v] = (float(np.floor(start)), float(np.floor(start + length)))
            elif kind == "BAD_VALUE":
                raw = ["STR", None][int(rng.integers(0, 2))]
                unit = None if raw else "furlongs"
                p.bad_values.append([v, when(0.1, 0.9), "odometer-traveleddistance", raw, unit, False])
            pos += 1
            budget -= 1

    # non-odometer faults, on any vehicle
    for v in rng.choice(n, size=min(n, max(1, round(0.04 * n))), replace=False):
        v = int(v)
        sig = "location-preciselocation" if rng.random() < 0.7 else "wheel-tires"
        p.revoked[v] = (when(0.2, 0.8), sig)
    for v in rng.choice(n, size=min(n, max(2, round(0.06 * n))), replace=False):
        v = int(v)
        pt = int(fleet.powertrain[v])
        opts = ["lowvoltagebattery-stateofcharge", "wheel-tires"]
        if pt != C.ICE:
            opts.append("tractionbattery-stateofcharge")
        if pt != C.BEV:
            opts.append("internalcombustionengine-fuellevel")
        sig = opts[int(rng.integers(0, len(opts)))]
        if sig == "tractionbattery-stateofcharge":
            raw = ["180", "-5", "255"][int(rng.integers(0, 3))]
        elif sig == "internalcombustionengine-fuellevel":
            raw = '"%.1f"' % rng.uniform(10, 90)
        elif sig == "lowvoltagebattery-stateofcharge":
            raw = ["250", '"LOW"'][int(rng.integers(0, 2))]
        else:
            raw = '"%d"' % int(rng.integers(200, 260))
        p.bad_values.append([v, when(0.1, 0.9), sig, raw, None, False])
    for j, v in enumerate(rng.choice(n, size=min(n, max(1, round(0.06 * n))), replace=False)):
        t = when(0.05, 0.9)
        resolved = float(np.floor(t + rng.uniform(2, 30) * 3600)) if (j == 0 or rng.random() < 0.4) else None
        if resolved is not None and resolved >= fleet.t_end - 60:
            resolved = None
        p.vehicle_errors.append((int(v), t, int(rng.integers(0, len(C.VEHICLE_ERRORS))), resolved))
    n_files = cfg.days * cfg.files_per_day
    for k in rng.choice(n_files, size=min(n_files, max(3, round(0.06 * n_files))), replace=True):
        key = (int(k) // cfg.files_per_day, int(k) % cfg.files_per_day)
        p.malformed_files[key] = p.malformed_files.get(key, 0) + 1
    return p
