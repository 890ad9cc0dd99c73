"""Ground truth of a simulation run (Parquet + summary.json, each written atomically)."""
from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl

from . import catalog as C
from .fleet import DAY
from .encode import charge_record_id, service_record_id
from .ids import uuids
from .wear import OIL_DUE_PCT, low_voltage_soc, tire_pressure

TS = pl.Datetime("us", "UTC")
TIRES = ("tire_front_left", "tire_front_right", "tire_rear_left", "tire_rear_right")
TIRE_DUE_SHARE = 0.75
LV_DUE_PCT = 50.0
# truth column (reports_<column>) per newer signal: whether the vehicle's make sends it
NEWER_SIGNAL_COLUMNS = {C.RANGE: "range", C.LIMITS: "charge_limits", C.FAST_CHARGER: "fast_charger",
                        C.CHARGING_STATUS: "charging_status", C.LOW_VOLTAGE_STATUS: "low_voltage_status",
                        C.SYSTEM_STATUS: "system_status", C.SERVICE_RECORDS: "service_records",
                        C.CHARGE_RECORDS: "charge_records"}
FAULT_KINDS = ("SPIKE", "ROLLBACK", "GAP", "UNIT_CHANGE", "DUPLICATE", "LATE", "MALFORMED", "OUT_OF_ORDER",
               "PERMISSION_REVOKED", "BAD_VALUE", "VEHICLE_ERROR")


def _ts(t: float | None) -> datetime | None:
    if t is None or not np.isfinite(t):
        return None
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=int(round(t * 1e6)))


def _write_parquet(df: pl.DataFrame, path: Path) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    df.write_parquet(tmp, compression="zstd", statistics=True)
    os.replace(tmp, path)


class TruthBuilder:
    """Collects the truth while the days run (faults, daily distance, oil events) and writes it at the end."""

    def __init__(self, cfg, fleet, plan, faults: list):
        self.cfg = cfg
        self.fleet = fleet
        self.plan = plan
        self.faults = faults
        self.daily: list = []
        self.oil_end = np.full((cfg.days, fleet.size), np.nan)
        self.odo_end = np.zeros((cfg.days, fleet.size))
        self.oil_resets: dict = {}  # v -> (t, odo)
        self.oil_crossed: dict = {}  # v -> (t, odo)
        self.gaps: dict = {}  # v -> {"start": odo, "end": odo}
        self.n_sessions = 0
        self.last_low_voltage_status: dict = {}  # v -> (t, word): the latest 12 V status the car sent
        self.services: list = []  # (v, t, odometer km) of every oil change, in order

    # -- collection -----------------------------------------------------------------
    def fault(self, v, kind, at, detail, odometer_before_km=None, odometer_after_km=None, event_id=None,
              file=None) -> None:
        self.faults.append(dict(vehicle_index=int(v), kind=kind, at=float(at), detail=detail,
                                odometer_before_km=None if odometer_before_km is None else float(odometer_before_km),
                                odometer_after_km=None if odometer_after_km is None else float(odometer_after_km),
                                event_id=event_id, file=file))

    def gap_probe(self, v: int, kind: str, t: float, odo: float) -> None:
        self.gaps.setdefault(v, {})[kind] = (t, odo)

    def add_day(self, d: int, d0: float, odo_start: np.ndarray, odo_end: np.ndarray) -> None:
        day = (datetime.fromtimestamp(d0, tz=timezone.utc)).date()
        self.odo_end[d] = odo_end
        self.daily.append(pl.DataFrame({
            "vehicle_id": self.fleet.vehicle_id.astype(object), "day": [day] * self.fleet.size,
            "distance_km": np.round(odo_end - odo_start, 4),
            "odometer_start_km": np.round(odo_start, 4), "odometer_end_km": np.round(odo_end, 4)},
            schema={"vehicle_id": pl.String, "day": pl.Date, "distance_km": pl.Float64,
                    "odometer_start_km": pl.Float64, "odometer_end_km": pl.Float64}))

    def low_voltage_statuses(self, vehicle: np.ndarray, at: np.ndarray, words: np.ndarray) -> None:
        for i in np.nonzero(words != None)[0]:  # noqa: E711 (object array)
            v, t = int(vehicle[i]), float(at[i])
            if v not in self.last_low_voltage_status or t >= self.last_low_voltage_status[v][0]:
                self.last_low_voltage_status[v] = (t, words[i])

    def oil_reset(self, v: int, t: float, odo: float) -> None:
        self.oil_resets[v] = (t, odo)
        self.services.append((v, t, odo))
        self.oil_crossed.pop(v, None)

    def oil_cross(self, v: int, t: float, odo: float) -> None:
        self.oil_crossed[v] = (t, odo)

    def oil_end_of_day(self, d: int, oil: np.ndarray) -> None:
        self.oil_end[d] = oil

    # -- output -----------------------------------------------------------------------
    def write(self, sessions: list, rng: np.random.Generator, out: Path) -> dict:
        fleet = self.fleet
        out = Path(out)
        vehicle_ids = fleet.vehicle_id.astype(object)
        clean = np.ones(fleet.size, dtype=bool)
        for v in self.plan.odometer_fault_vehicles:
            clean[v] = False
        powertrain_names = np.array(C.POWERTRAINS, dtype=object)[fleet.powertrain]
        vehicles = pl.DataFrame({
            "vehicle_id": vehicle_ids, "user_id": fleet.user_id.astype(object), "make": fleet.make,
            "model": fleet.model,
            "year": fleet.year, "vin": fleet.vin, "powertrain": powertrain_names,
            "nominal_capacity_kwh": [None if np.isnan(x) else float(x) for x in fleet.nominal_capacity_kwh],
            "usable_capacity_kwh": [None if np.isnan(x) else round(float(x), 4) for x in fleet.usable_capacity_kwh],
            "state_of_health": [None if np.isnan(x) else round(float(x), 4) for x in fleet.state_of_health],
            "consumption_kwh_per_km": [None if np.isnan(x) else round(float(x), 5)
                                       for x in fleet.consumption_kwh_per_km],
            "odometer_unit": np.where(fleet.odometer_in_miles, "mi", "km").astype(object),
            "odometer_unit_spelling": [fleet.mile_spelling[v] if fleet.odometer_in_miles[v] else fleet.km_spelling[v]
                                       for v in range(fleet.size)],
            "reports_energy_added": fleet.reports_energy_added,
            "reports_wattage": [u is not None for u in fleet.wattage_unit],
            "wattage_unit": fleet.wattage_unit, "reports_voltage_amperage": fleet.reports_voltage_amperage,
            "tire_unit": fleet.tire_unit,
            "clean_odometer": clean, "home_lat": np.round(fleet.home_lat, 6), "home_lon": np.round(fleet.home_lon, 6),
            "metro": [C.METROS[m][0] for m in fleet.metro_index], "commuter": fleet.commuter,
            "has_home_charger": fleet.has_home_charger,
            "home_charger_kw": [None if np.isnan(x) or not fleet.has_home_charger[i] else float(x)
                                for i, x in enumerate(fleet.home_charger_kw)],
            "has_work_charger": fleet.has_work_charger,
            "charge_limit_pct": [None if fleet.powertrain[i] == C.ICE else float(x)
                                 for i, x in enumerate(fleet.charge_limit_pct)],
            **{"reports_" + column: [code in signals for signals in fleet.newer_signals]
               for code, column in NEWER_SIGNAL_COLUMNS.items()},
            "range_at_full_km": [None if np.isnan(usable) else round(float(usable / per_km), 3)
                                 for usable, per_km in zip(fleet.usable_capacity_kwh, fleet.consumption_kwh_per_km)],
            "webhook_name": [C.WEBHOOKS[w][0] for w in fleet.webhook_index],
            "delivered_at_unit": ["s" if C.WEBHOOKS[w][2] else "ms" for w in fleet.webhook_index],
        }, strict=False)
        _write_parquet(vehicles, out / "vehicles.parquet")
        _write_parquet(pl.concat(self.daily), out / "daily_distance.parquet")

        # charging sessions
        ended_sessions = [s for s in sessions if s[1] < fleet.end_s]
        ended_sessions.sort(key=lambda s: (s[1], s[0]))
        ids = uuids(rng, len(ended_sessions))
        self.n_sessions = len(ended_sessions)
        sessions_frame = pl.DataFrame({
            "session_id": ids.astype(object),
            "vehicle_id": [str(fleet.vehicle_id[s[0]]) for s in ended_sessions],
            "plugged_at": [_ts(s[1]) for s in ended_sessions],
            "charge_started_at": [_ts(s[2]) for s in ended_sessions],
            "charge_ended_at": [_ts(s[3]) for s in ended_sessions],
            "unplugged_at": [_ts(s[4]) for s in ended_sessions],
            "location_type": [s[5] for s in ended_sessions], "is_dc_fast": [bool(s[6]) for s in ended_sessions],
            "soc_start_pct": [round(s[7], 4) for s in ended_sessions],
            "soc_end_pct": [round(s[8], 4) for s in ended_sessions],
            "energy_added_kwh": [round(s[9], 4) for s in ended_sessions],
            "avg_power_kw": [round(s[10], 4) for s in ended_sessions],
            "max_power_kw": [round(s[11], 4) for s in ended_sessions],
            "ends_after_window": [bool(s[4] >= fleet.end_s) for s in ended_sessions],
            "charge_limit_pct": [float(fleet.charge_limit_pct[s[0]]) for s in ended_sessions],
            # complete: it stopped at (within 1 point of) the limit; else the owner unplugged first
            "completion": ["complete" if s[8] >= fleet.charge_limit_pct[s[0]] - 1.0 else "interrupted"
                           for s in ended_sessions],
            "current_type": ["DC" if s[6] else "AC" for s in ended_sessions],
            # the id of the car's own record of it, for cars that send charge records
            "charge_record_id": [charge_record_id(fleet, s[0], s[2])
                                 if C.CHARGE_RECORDS in fleet.newer_signals[s[0]] and fleet.powertrain[s[0]] != C.ICE
                                 else None for s in ended_sessions],
        }, schema={"session_id": pl.String, "vehicle_id": pl.String, "plugged_at": TS,
                   "charge_started_at": TS, "charge_ended_at": TS, "unplugged_at": TS,
                   "location_type": pl.String, "is_dc_fast": pl.Boolean, "soc_start_pct": pl.Float64,
                   "soc_end_pct": pl.Float64, "energy_added_kwh": pl.Float64, "avg_power_kw": pl.Float64,
                   "max_power_kw": pl.Float64, "ends_after_window": pl.Boolean, "charge_limit_pct": pl.Float64,
                   "completion": pl.String, "current_type": pl.String, "charge_record_id": pl.String})
        _write_parquet(sessions_frame, out / "charging_sessions.parquet")

        # faults
        for v, g in self.gaps.items():
            ts, before = g.get("start", (self.plan.gap[v][0], None))
            te, after = g.get("end", (self.plan.gap[v][1], None))
            self.fault(v, "GAP", ts, f"no deliveries from {_ts(ts).isoformat()} to {_ts(te).isoformat()} "
                                     f"({(te - ts) / 3600:.1f} h) while the vehicle kept driving", before, after)
        rows = []
        for r in self.faults:
            vehicle_index = r.get("vehicle_index")
            rows.append({
                "vehicle_id": None if vehicle_index is None else str(fleet.vehicle_id[vehicle_index]),
                "kind": r["kind"],
                "at": _ts(r["at"]) if r.get("at") is not None else None, "detail": r.get("detail"),
                "odometer_before_km": r.get("odometer_before_km"), "odometer_after_km": r.get("odometer_after_km"),
                "event_id": r.get("event_id"), "file": r.get("file"), "line_number": r.get("line_number"),
            })
        faults_schema = {"vehicle_id": pl.String, "kind": pl.String, "at": TS, "detail": pl.String,
                   "odometer_before_km": pl.Float64, "odometer_after_km": pl.Float64, "event_id": pl.String,
                   "file": pl.String, "line_number": pl.Int64}
        faults_frame = pl.DataFrame(rows, schema=faults_schema) if rows else pl.DataFrame(schema=faults_schema)
        faults_frame = faults_frame.sort(["kind", "at", "vehicle_id", "file", "event_id"], nulls_last=True)
        _write_parquet(faults_frame, out / "faults.parquet")
        counts = {k: int((faults_frame["kind"] == k).sum()) for k in FAULT_KINDS}

        _write_parquet(self._maintenance(), out / "maintenance.parquet")

        dtc_rows = []
        for v in range(fleet.size):
            for code, first, cleared in fleet.trouble_codes[v]:
                if first >= fleet.end_s:
                    continue
                dtc_rows.append({"vehicle_id": str(fleet.vehicle_id[v]), "code": code,
                                 "description": dict(C.DTC_CODES)[code], "first_seen_at": _ts(first),
                                 "cleared_at": _ts(cleared) if cleared is not None and cleared < fleet.end_s else None,
                                 # the diagnostics systems the car reports in ALERT while the code is active
                                 "alert_systems": list(C.DTC_SYSTEMS.get(code, ()))
                                 if C.SYSTEM_STATUS in fleet.newer_signals[v] else []})
        dtc_schema = {"vehicle_id": pl.String, "code": pl.String, "description": pl.String,
                   "first_seen_at": TS, "cleared_at": TS, "alert_systems": pl.List(pl.String)}
        _write_parquet(pl.DataFrame(dtc_rows, schema=dtc_schema) if dtc_rows else pl.DataFrame(schema=dtc_schema),
                       out / "dtc.parquet")

        service_rows = [{"vehicle_id": str(fleet.vehicle_id[v]), "record_id": service_record_id(fleet, v, t),
                         "serviced_at": _ts(t), "odometer_km": round(odo, 1), "task": "Oil change",
                         "reported": bool(C.SERVICE_RECORDS in fleet.newer_signals[v])}
                        for v, t, odo in self.services if t < fleet.end_s]
        service_schema = {"vehicle_id": pl.String, "record_id": pl.String, "serviced_at": TS,
                          "odometer_km": pl.Float64, "task": pl.String, "reported": pl.Boolean}
        _write_parquet(pl.DataFrame(service_rows, schema=service_schema), out / "service_records.parquet")
        return counts

    def _maintenance(self) -> pl.DataFrame:
        fleet, cfg = self.fleet, self.cfg
        t_end = fleet.end_s
        last = cfg.days - 1
        stretch = min(14, cfg.days)
        odo_end = self.odo_end[last]
        odo_before = self.odo_end[last - stretch] if cfg.days > stretch else fleet.odometer_start_km
        km_per_day = (odo_end - odo_before) / stretch
        rows = []
        for v in range(fleet.size):
            vehicle_id = str(fleet.vehicle_id[v])
            if fleet.powertrain[v] != C.BEV:
                life = float(fleet.oil_life_km[v])
                oil = float(self.oil_end[last, v])
                rate = -float(km_per_day[v]) / life * 100.0
                due_odo = float(odo_end[v] + (oil - OIL_DUE_PCT) / 100.0 * life)
                if oil <= OIL_DUE_PCT and v in self.oil_crossed:
                    due = self.oil_crossed[v][0]
                    due_odo = self.oil_crossed[v][1]
                elif rate < 0:
                    due = t_end + (oil - OIL_DUE_PCT) / -rate * DAY
                else:
                    due = None
                reset = self.oil_resets.get(v)
                rows.append(dict(vehicle_id=vehicle_id, component="engine_oil", baseline_value=100.0,
                                 threshold_value=OIL_DUE_PCT, value_at_end=round(max(0.0, oil), 3),
                                 unit="percent", rate_per_day=round(rate, 5), is_leaking=None, is_weak=None,
                                 due_at=_ts(due), due_odometer_km=round(due_odo, 3),
                                 last_reset_at=_ts(reset[0]) if reset else None))
            p_end = tire_pressure(fleet, np.array([v]), np.array([t_end]))[0]
            for k, comp in enumerate(TIRES):
                base = float(fleet.tire_baseline_kpa[v, k])
                threshold = TIRE_DUE_SHARE * base
                slow = float(fleet.tire_seep_kpa_per_day[v, k])
                leak_start = float(fleet.tire_leak_start_s[v, k])
                leak = float(fleet.tire_leak_kpa_per_day[v, k])
                leaking = leak > 0 and leak_start < t_end
                rate = -(slow + (leak if leaking else 0.0))
                reinflated_at = float(fleet.tire_reinflated_s[v, k])
                reset = reinflated_at if reinflated_at < t_end else None
                pressure_at_end = float(p_end[k])
                if pressure_at_end < threshold:
                    ref = reset if reset is not None else fleet.start_s
                    leak_from = max(ref, leak_start) if leaking else np.inf
                    slow_due = ref + (base - threshold) / slow * DAY
                    if slow_due <= leak_from:
                        due = slow_due
                    else:
                        due = (base - threshold + slow * ref / DAY + leak * leak_from / DAY) / (slow + leak) * DAY
                else:
                    due = t_end + (pressure_at_end - threshold) / -rate * DAY
                rows.append(dict(vehicle_id=vehicle_id, component=comp, baseline_value=round(base, 3),
                                 threshold_value=round(threshold, 3), value_at_end=round(pressure_at_end, 3),
                                 unit="kPa",
                                 rate_per_day=round(rate, 5), is_leaking=bool(leak > 0), is_weak=None,
                                 due_at=_ts(due), due_odometer_km=None, last_reset_at=_ts(reset)))
            rate = float(fleet.low_voltage_rate_pct_per_day[v])
            lv_end = float(low_voltage_soc(fleet, np.array([v]), np.array([t_end]))[0])
            baseline = float(fleet.low_voltage_baseline_pct[v])
            due = fleet.start_s + (LV_DUE_PCT - baseline) / rate * DAY if rate < 0 else None
            rows.append(dict(vehicle_id=vehicle_id, component="low_voltage_battery",
                             baseline_value=round(float(fleet.low_voltage_baseline_pct[v]), 3),
                             threshold_value=LV_DUE_PCT, value_at_end=round(lv_end, 3), unit="percent",
                             rate_per_day=round(rate, 5), is_leaking=None, is_weak=bool(rate < 0), due_at=_ts(due),
                             due_odometer_km=None, last_reset_at=None,
                             # the car's latest lowvoltagebattery-status (None: it sends none)
                             status_at_end=self.last_low_voltage_status.get(v, (None, None))[1]))
        schema = {"vehicle_id": pl.String, "component": pl.String, "baseline_value": pl.Float64,
                  "threshold_value": pl.Float64, "value_at_end": pl.Float64, "unit": pl.String,
                  "rate_per_day": pl.Float64, "is_leaking": pl.Boolean, "is_weak": pl.Boolean, "due_at": TS,
                  "due_odometer_km": pl.Float64, "last_reset_at": TS, "status_at_end": pl.String}
        return pl.DataFrame(rows, schema=schema)

    def write_summary(self, summary, out: Path) -> None:
        doc = {"config": self.cfg.to_dict(), "counts": {k: v for k, v in summary.to_dict().items()
                                                       if k not in ("landing_dir", "truth_dir")},
               "window": {"start": _ts(self.fleet.start_s).isoformat(), "end": _ts(self.fleet.end_s).isoformat()}}
        path = Path(out) / "summary.json"
        tmp = path.with_name("." + path.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
