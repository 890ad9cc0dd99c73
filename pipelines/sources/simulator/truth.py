"""Ground truth of a simulation run (Parquet + summary.json, each written atomically)."""
from __future__ import annotations

import json
import os
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl

from . import catalog as C
from .fleet import DAY
from .ids import uuids
from .wear import OIL_DUE_PCT, low_voltage_soc, tire_pressure

TS = pl.Datetime("us", "UTC")
TIRES = ("tire_front_left", "tire_front_right", "tire_rear_left", "tire_rear_right")
TIRE_DUE_SHARE = 0.75
LV_DUE_PCT = 50.0
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
    def __init__(self, cfg, fleet, plan, faults: list):
        self.cfg = cfg
        self.f = fleet
        self.plan = plan
        self.faults = faults
        self.daily: list = []
        self.oil_end = np.full((cfg.days, fleet.n), np.nan)
        self.odo_end = np.zeros((cfg.days, fleet.n))
        self.oil_resets: dict = {}  # v -> (t, odo)
        self.oil_crossed: dict = {}  # v -> (t, odo)
        self.gaps: dict = {}  # v -> {"start": odo, "end": odo}
        self.n_sessions = 0

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
            "vehicle_id": self.f.vehicle_id.astype(object), "day": [day] * self.f.n,
            "distance_km": np.round(odo_end - odo_start, 4),
            "odometer_start_km": np.round(odo_start, 4), "odometer_end_km": np.round(odo_end, 4)},
            schema={"vehicle_id": pl.String, "day": pl.Date, "distance_km": pl.Float64,
                    "odometer_start_km": pl.Float64, "odometer_end_km": pl.Float64}))

    def oil_reset(self, v: int, t: float, odo: float) -> None:
        self.oil_resets[v] = (t, odo)
        self.oil_crossed.pop(v, None)

    def oil_cross(self, v: int, t: float, odo: float) -> None:
        self.oil_crossed[v] = (t, odo)

    def oil_end_of_day(self, d: int, oil: np.ndarray) -> None:
        self.oil_end[d] = oil

    # -- output -----------------------------------------------------------------------
    def write(self, sessions: list, rng: np.random.Generator, out: Path) -> dict:
        f, cfg = self.f, self.cfg
        out = Path(out)
        vid = f.vehicle_id.astype(object)
        clean = np.ones(f.n, dtype=bool)
        for v in self.plan.odometer_fault_vehicles:
            clean[v] = False
        pt_names = np.array(C.POWERTRAINS, dtype=object)[f.powertrain]
        vehicles = pl.DataFrame({
            "vehicle_id": vid, "user_id": f.user_id.astype(object), "make": f.make, "model": f.model,
            "year": f.year, "vin": f.vin, "powertrain": pt_names,
            "nominal_capacity_kwh": [None if np.isnan(x) else float(x) for x in f.nominal_kwh],
            "usable_capacity_kwh": [None if np.isnan(x) else round(float(x), 4) for x in f.usable_kwh],
            "state_of_health": [None if np.isnan(x) else round(float(x), 4) for x in f.soh],
            "consumption_kwh_per_km": [None if np.isnan(x) else round(float(x), 5) for x in f.cons_kwh_per_km],
            "odometer_unit": np.where(f.odo_miles, "mi", "km").astype(object),
            "odometer_unit_spelling": [f.mi_spelling[v] if f.odo_miles[v] else f.km_spelling[v] for v in range(f.n)],
            "reports_energy_added": f.reports_energy_added, "reports_wattage": [u is not None for u in f.wattage_unit],
            "wattage_unit": f.wattage_unit, "reports_voltage_amperage": f.volt_amp,
            "tire_unit": f.tire_unit,
            "clean_odometer": clean, "home_lat": np.round(f.home_lat, 6), "home_lon": np.round(f.home_lon, 6),
            "metro": [C.METROS[m][0] for m in f.metro], "commuter": f.commuter,
            "has_home_charger": f.has_home_charger,
            "home_charger_kw": [None if np.isnan(x) or not f.has_home_charger[i] else float(x)
                                for i, x in enumerate(f.home_kw)],
            "has_work_charger": f.work_charger,
            "charge_limit_pct": [None if f.powertrain[i] == C.ICE else float(x) for i, x in enumerate(f.charge_limit)],
            "webhook_name": [C.WEBHOOKS[w][0] for w in f.webhook],
            "delivered_at_unit": ["s" if C.WEBHOOKS[w][2] else "ms" for w in f.webhook],
        }, strict=False)
        _write_parquet(vehicles, out / "vehicles.parquet")
        _write_parquet(pl.concat(self.daily), out / "daily_distance.parquet")

        # charging sessions
        sess = [s for s in sessions if s[1] < f.t_end]
        sess.sort(key=lambda s: (s[1], s[0]))
        ids = uuids(rng, len(sess))
        self.n_sessions = len(sess)
        cs = pl.DataFrame({
            "session_id": ids.astype(object),
            "vehicle_id": [str(f.vehicle_id[s[0]]) for s in sess],
            "plugged_at": [_ts(s[1]) for s in sess], "charge_started_at": [_ts(s[2]) for s in sess],
            "charge_ended_at": [_ts(s[3]) for s in sess], "unplugged_at": [_ts(s[4]) for s in sess],
            "location_type": [s[5] for s in sess], "is_dc_fast": [bool(s[6]) for s in sess],
            "soc_start_pct": [round(s[7], 4) for s in sess], "soc_end_pct": [round(s[8], 4) for s in sess],
            "energy_added_kwh": [round(s[9], 4) for s in sess], "avg_power_kw": [round(s[10], 4) for s in sess],
            "max_power_kw": [round(s[11], 4) for s in sess],
            "ends_after_window": [bool(s[4] >= f.t_end) for s in sess],
        }, schema={"session_id": pl.String, "vehicle_id": pl.String, "plugged_at": TS,
                   "charge_started_at": TS, "charge_ended_at": TS, "unplugged_at": TS,
                   "location_type": pl.String, "is_dc_fast": pl.Boolean, "soc_start_pct": pl.Float64,
                   "soc_end_pct": pl.Float64, "energy_added_kwh": pl.Float64, "avg_power_kw": pl.Float64,
                   "max_power_kw": pl.Float64, "ends_after_window": pl.Boolean})
        _write_parquet(cs, out / "charging_sessions.parquet")

        # faults
        for v, g in self.gaps.items():
            ts, before = g.get("start", (self.plan.gap[v][0], None))
            te, after = g.get("end", (self.plan.gap[v][1], None))
            self.fault(v, "GAP", ts, f"no deliveries from {_ts(ts).isoformat()} to {_ts(te).isoformat()} "
                                     f"({(te - ts) / 3600:.1f} h) while the vehicle kept driving", before, after)
        rows = []
        for r in self.faults:
            vi = r.get("vehicle_index")
            rows.append({
                "vehicle_id": None if vi is None else str(f.vehicle_id[vi]), "kind": r["kind"],
                "at": _ts(r["at"]) if r.get("at") is not None else None, "detail": r.get("detail"),
                "odometer_before_km": r.get("odometer_before_km"), "odometer_after_km": r.get("odometer_after_km"),
                "event_id": r.get("event_id"), "file": r.get("file"), "line_number": r.get("line_number"),
            })
        fschema = {"vehicle_id": pl.String, "kind": pl.String, "at": TS, "detail": pl.String,
                   "odometer_before_km": pl.Float64, "odometer_after_km": pl.Float64, "event_id": pl.String,
                   "file": pl.String, "line_number": pl.Int64}
        fdf = pl.DataFrame(rows, schema=fschema) if rows else pl.DataFrame(schema=fschema)
        fdf = fdf.sort(["kind", "at", "vehicle_id", "file", "event_id"], nulls_last=True)
        _write_parquet(fdf, out / "faults.parquet")
        counts = {k: int((fdf["kind"] == k).sum()) for k in FAULT_KINDS}

        _write_parquet(self._maintenance(), out / "maintenance.parquet")

        dtc_rows = []
        for v in range(f.n):
            for code, first, cleared in f.dtcs[v]:
                if first >= f.t_end:
                    continue
                dtc_rows.append({"vehicle_id": str(f.vehicle_id[v]), "code": code,
                                 "description": dict(C.DTC_CODES)[code], "first_seen_at": _ts(first),
                                 "cleared_at": _ts(cleared) if cleared is not None and cleared < f.t_end else None})
        dschema = {"vehicle_id": pl.String, "code": pl.String, "description": pl.String,
                   "first_seen_at": TS, "cleared_at": TS}
        _write_parquet(pl.DataFrame(dtc_rows, schema=dschema) if dtc_rows else pl.DataFrame(schema=dschema),
                       out / "dtc.parquet")
        return counts

    def _maintenance(self) -> pl.DataFrame:
        f, cfg = self.f, self.cfg
        t_end = f.t_end
        last = cfg.days - 1
        stretch = min(14, cfg.days)
        odo_end = self.odo_end[last]
        odo_before = self.odo_end[last - stretch] if cfg.days > stretch else f.odo_start_km
        km_per_day = (odo_end - odo_before) / stretch
        rows = []
        for v in range(f.n):
            vid = str(f.vehicle_id[v])
            if f.powertrain[v] != C.BEV:
                life = float(f.oil_life_km[v])
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
                rows.append(dict(vehicle_id=vid, component="engine_oil", baseline_value=100.0,
                                 threshold_value=OIL_DUE_PCT, value_at_end=round(max(0.0, oil), 3),
                                 unit="percent", rate_per_day=round(rate, 5), is_leaking=None, is_weak=None,
                                 due_at=_ts(due), due_odometer_km=round(due_odo, 3),
                                 last_reset_at=_ts(reset[0]) if reset else None))
            p_end = tire_pressure(f, np.array([v]), np.array([t_end]))[0]
            for k, comp in enumerate(TIRES):
                base = float(f.tire_base[v, k])
                thr = TIRE_DUE_SHARE * base
                slow = float(f.tire_slow[v, k])
                ls = float(f.tire_leak_start[v, k])
                leak = float(f.tire_leak[v, k])
                leaking = leak > 0 and ls < t_end
                rate = -(slow + (leak if leaking else 0.0))
                ri = float(f.tire_reinflate[v, k])
                reset = ri if ri < t_end else None
                pe = float(p_end[k])
                if pe < thr:
                    ref = reset if reset is not None else f.t0
                    lf = max(ref, ls) if leaking else np.inf
                    t1 = ref + (base - thr) / slow * DAY
                    if t1 <= lf:
                        due = t1
                    else:
                        due = (base - thr + slow * ref / DAY + leak * lf / DAY) / (slow + leak) * DAY
                else:
                    due = t_end + (pe - thr) / -rate * DAY
                rows.append(dict(vehicle_id=vid, component=comp, baseline_value=round(base, 3),
                                 threshold_value=round(thr, 3), value_at_end=round(pe, 3), unit="kPa",
                                 rate_per_day=round(rate, 5), is_leaking=bool(leak > 0), is_weak=None,
                                 due_at=_ts(due), due_odometer_km=None, last_reset_at=_ts(reset)))
            rate = float(f.lv_rate[v])
            lv_end = float(low_voltage_soc(f, np.array([v]), np.array([t_end]))[0])
            due = f.t0 + (LV_DUE_PCT - float(f.lv_base[v])) / rate * DAY if rate < 0 else None
            rows.append(dict(vehicle_id=vid, component="low_voltage_battery", baseline_value=round(float(f.lv_base[v]), 3),
                             threshold_value=LV_DUE_PCT, value_at_end=round(lv_end, 3), unit="percent",
                             rate_per_day=round(rate, 5), is_leaking=None, is_weak=bool(rate < 0), due_at=_ts(due),
                             due_odometer_km=None, last_reset_at=None))
        schema = {"vehicle_id": pl.String, "component": pl.String, "baseline_value": pl.Float64,
                  "threshold_value": pl.Float64, "value_at_end": pl.Float64, "unit": pl.String,
                  "rate_per_day": pl.Float64, "is_leaking": pl.Boolean, "is_weak": pl.Boolean, "due_at": TS,
                  "due_odometer_km": pl.Float64, "last_reset_at": TS}
        return pl.DataFrame(rows, schema=schema)

    def write_summary(self, summary, out: Path) -> None:
        doc = {"config": self.cfg.to_dict(), "counts": {k: v for k, v in summary.to_dict().items()
                                                       if k not in ("landing_dir", "truth_dir")},
               "window": {"start": _ts(self.f.t0).isoformat(), "end": _ts(self.f.t_end).isoformat()}}
        path = Path(out) / "summary.json"
        tmp = path.with_name("." + path.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
