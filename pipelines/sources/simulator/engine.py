"""The day loop: simulate, sample readings, apply faults, encode, land, keep the truth."""
from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

from . import catalog as C
from .activity import (CHARGING, DRIVING, EADD, FUEL, HEAD, LAT, LON, MODE, N_COLS, ODO, PLUGGED,
                       POWER, SOC, TRIG_CABLE, TRIG_CHARGING, TRIG_ODO, UNIFORMS_PER_DAY, Draws,
                       VehicleSim)
from .config import SimulationConfig, SimulationSummary
from .encode import TRIGGER_OBJ, TRIGGER_STR, build_state_lines, dumps, iso_ms, vehicle_fragment
from .faults import plan_faults
from .fleet import DAY, build_fleet, lv_soc, tire_pressure
from .geo import compass
from .ids import uuids
from .landing import LandingWriter
from .truth import TruthBuilder

BLOCK = 1e8  # time-key offset per vehicle (seconds)
ENCODE_ROWS = 8192
# trigger indexes into encode.TRIGGER_CODES
TG_ODO, TG_CABLE, TG_CHARGING, TG_SOC, TG_LV, TG_FUEL = range(6)
OIL_DUE_PCT = 15.0


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _status_error(err_type: str, code: str, description: str) -> str:
    return dumps({"value": "ERROR", "error": {"type": err_type, "code": code, "description": description}})


REVOKED_JSON = _status_error("PERMISSION", "PERMISSION_REVOKED", C.REVOKED_DESCRIPTION)
TRANSIENT_JSON = _status_error(*C.TRANSIENT_ERROR)


class _Day:
    """Global piecewise-linear lookups for one day (all vehicles at once)."""

    def __init__(self, segs: list, d0: float):
        lens = np.fromiter((len(s) for s in segs), dtype=np.int64, count=len(segs))
        self.K = np.array([kf for s in segs for kf in s], dtype=np.float64).reshape(-1, N_COLS)
        vv = np.repeat(np.arange(len(segs), dtype=np.float64), lens)
        self.g = vv * BLOCK + (self.K[:, 0] - d0)
        self.d0 = d0

    def key(self, v: np.ndarray, t: np.ndarray) -> np.ndarray:
        return np.asarray(v, dtype=np.float64) * BLOCK + (np.asarray(t, dtype=np.float64) - self.d0)

    def lin(self, q: np.ndarray, col: int) -> np.ndarray:
        return np.interp(q, self.g, self.K[:, col])

    def step_idx(self, q: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.g, q, side="right") - 1

    def first_reach(self, v: int, target_odo: float) -> float:
        """First time vehicle ``v`` reaches ``target_odo`` (km) within this day's keyframes."""
        lo = np.searchsorted(self.g, v * BLOCK - BLOCK / 2)
        hi = np.searchsorted(self.g, v * BLOCK + BLOCK / 2)
        odo = self.K[lo:hi, ODO]
        t = self.K[lo:hi, 0]
        i = int(np.searchsorted(odo, target_odo, side="left"))
        if i <= 0:
            return float(t[0])
        if i >= len(odo):
            return float(t[-1])
        o0, o1 = odo[i - 1], odo[i]
        f = 0.0 if o1 <= o0 else (target_odo - o0) / (o1 - o0)
        return float(t[i - 1] + f * (t[i] - t[i - 1]))


def simulate_fleet(cfg: SimulationConfig | None = None, landing_dir: Path | str = "data/landing",
                   truth_dir: Path | str = "data/truth") -> SimulationSummary:
    """Simulate the fleet; write landing files under ``landing_dir`` and the truth under ``truth_dir``."""
    cfg = cfg or SimulationConfig()
    landing_dir, truth_dir = Path(landing_dir), Path(truth_dir)
    landing_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(8)]
    rng_fleet, rng_act, rng_read, rng_ids, rng_faults, rng_land, rng_err, rng_truth = streams

    fleet = build_fleet(cfg, rng_fleet)
    plan = plan_faults(cfg, fleet, rng_faults)
    n = fleet.n
    sessions: list = []
    sims = [VehicleSim(fleet, v, sessions) for v in range(n)]
    faults: list = []
    truth = TruthBuilder(cfg, fleet, plan, faults)
    writer = LandingWriter(cfg, landing_dir, fleet.t0, rng_land, plan, faults)

    webhook_ids = uuids(rng_ids, len(C.WEBHOOKS))
    webhook_tail = np.array([',"webhookId":"%s","webhookName":"%s","mode":"TEST"' % (webhook_ids[i], w[0])
                             for i, w in enumerate(C.WEBHOOKS)], dtype=object)
    wh_seconds = np.array([w[2] for w in C.WEBHOOKS])[fleet.webhook]
    wh_strtrig = np.array([w[3] for w in C.WEBHOOKS])[fleet.webhook]
    vfrag = np.array([vehicle_fragment(str(fleet.user_id[v]), str(fleet.vehicle_id[v]), fleet.make[v],
                                       fleet.model[v], int(fleet.year[v]), fleet.vin[v]) for v in range(n)],
                     dtype=object)
    v_tail = webhook_tail[fleet.webhook]
    ev_mask = fleet.powertrain != C.ICE
    fuel_mask = fleet.powertrain != C.BEV
    has_watt = np.array([u is not None for u in fleet.wattage_unit])
    watt_unit = np.array([u or "W" for u in fleet.wattage_unit], dtype=object)
    watt_kw = watt_unit == "kW"
    tire_unit = np.array(fleet.tire_unit, dtype=object)
    km_sp = np.array(fleet.km_spelling, dtype=object)
    mi_sp = np.array(fleet.mi_spelling, dtype=object)
    noem = {k: np.array([k in s for s in fleet.no_oem]) for k in C.SIGNALS}
    grid_volt = np.where(np.array([C.METROS[m][0] == "bay_area" for m in fleet.metro]), 240.0, 230.0)
    grid_volt = grid_volt * rng_read.uniform(0.985, 1.015, n)
    nominal_str = np.array(["%s" % x for x in np.round(fleet.nominal_kwh, 1)], dtype=object)
    dtc_vehicles = {v for v in range(n) if fleet.dtcs[v]}
    lag_small = noem["odometer-traveleddistance"]

    # oil state
    oil_ref_pct = fleet.oil0.copy()
    oil_ref_odo = fleet.odo_start_km.copy()
    oil_change_below = fleet.oil_change_below.copy()
    last_slot = np.full(n, -(1 << 62), dtype=np.int64)
    spike_pending = {v: s for v, s in plan.spike.items()}
    recorded = set()

    interval = cfg.interval_minutes * 60.0
    jitter = min(0.2 * interval, 90.0)
    counts = dict(vehicle_state=0, vehicle_error=0, verify=0, signals=0, signal_errors=0)

    draws0 = rng_act.random((n, 64))
    plans = [sims[v].plan_day(fleet.t0, _weekday(fleet.t0), Draws(draws0[v])) for v in range(n)]

    for d in range(cfg.days):
        d0 = fleet.t0 + d * DAY
        d1 = d0 + DAY
        u_day = rng_act.random((n, UNIFORMS_PER_DAY))
        u_plan = rng_act.random((n, 64))
        next_plans = []
        for v in range(n):
            r = Draws(u_plan[v])
            p = sims[v].plan_day(d1, _weekday(d1), r)
            next_plans.append(p)
            nfd = p[0][0] if p else d1 + r.uni(7.0, 20.0) * 3600.0
            sims[v].simulate_day(plans[v], nfd, d0, Draws(u_day[v]))
        plans = next_plans

        # oil changes decided at the start of the day (value reset later in the day)
        segs, evs = [], []
        for v in range(n):
            s, e = sims[v].take_day(d0)
            segs.append(s)
            evs.append(e)
        day = _Day(segs, d0)
        vidx = np.arange(n)
        odo_d0 = day.lin(day.key(vidx, np.full(n, d0)), ODO)
        odo_d1 = day.lin(day.key(vidx, np.full(n, d1)), ODO)
        oil_d0 = oil_ref_pct - (odo_d0 - oil_ref_odo) / fleet.oil_life_km * 100.0
        reset_t = np.full(n, np.inf)
        want = (~np.isnan(oil_change_below)) & (oil_d0 < np.nan_to_num(oil_change_below, nan=-1.0))
        go = want & (rng_read.random(n) < 0.5)
        reset_t[go] = np.floor(d0 + rng_read.uniform(8.0, 18.0, int(go.sum())) * 3600.0)
        new_ref_odo = np.where(go, day.lin(day.key(vidx, np.where(go, reset_t, d0)), ODO), oil_ref_odo)
        oil_change_below[go] = np.nan

        # ---- reading times ------------------------------------------------------------
        k_first = int(math.floor((d0 - fleet.t0) / interval)) - 1
        n_slots = int(math.ceil(DAY / interval)) + 3
        k_abs = k_first + np.arange(n_slots)
        tg = fleet.t0 + fleet.grid_offset[:, None] + k_abs[None, :] * interval
        tg = np.floor(tg + rng_read.uniform(-jitter, jitter, tg.shape))
        vg = np.broadcast_to(vidx[:, None], tg.shape)
        kg = np.broadcast_to(k_abs[None, :], tg.shape)
        valid = (tg >= d0) & (tg < d1)
        vg, tg, kg = vg[valid], tg[valid], kg[valid]
        mode_g = day.K[day.step_idx(day.key(vg, tg)), MODE]
        awake = (mode_g == DRIVING) | (mode_g == CHARGING)
        keep = (awake | ((kg + fleet.asleep_phase[vg]) % fleet.asleep_every[vg] == 0))
        keep &= rng_read.random(len(tg)) >= 0.015
        vg, tg = vg[keep], tg[keep]
        trig_g = np.full(len(tg), -1, dtype=np.int64)
        ev_v = np.fromiter((v for v in range(n) for _ in evs[v]), dtype=np.int64)
        ev_t = np.floor(np.fromiter((e[0] for v in range(n) for e in evs[v]), dtype=np.float64))
        ev_k = np.fromiter((e[1] for v in range(n) for e in evs[v]), dtype=np.int64)
        ev_trig = np.select([ev_k == TRIG_ODO, ev_k == TRIG_CABLE, ev_k == TRIG_CHARGING],
                            [TG_ODO, TG_CABLE, TG_CHARGING], -1)
        rv = np.concatenate([vg, ev_v])
        rt = np.concatenate([tg, ev_t])
        rtrig = np.concatenate([trig_g, ev_trig])
        inday = (rt >= d0) & (rt < d1)
        for v, (gs, ge) in plan.gap.items():
            inday &= ~((rv == v) & (rt >= gs) & (rt < ge))
        rv, rt, rtrig = rv[inday], rt[inday], rtrig[inday]
        order = np.lexsort((rt, rv))
        rv, rt, rtrig = rv[order], rt[order], rtrig[order]
        m = len(rv)

        # ---- true state at reading times -------------------------------------------------
        q = day.key(rv, rt)
        si = day.step_idx(q)
        odo = day.lin(q, ODO)
        soc = day.lin(q, SOC)
        fuel = day.lin(q, FUEL)
        lat = day.lin(q, LAT)
        lon = day.lin(q, LON)
        eadd = day.lin(q, EADD)
        mode = day.K[si, MODE]
        power = day.K[si, POWER]
        heading = day.K[si, HEAD]
        driving = mode == DRIVING
        charging = mode == CHARGING
        plugged = (mode == PLUGGED) | charging
        awake_r = driving | charging

        # slow signals: first reading in a new slow slot
        slot = np.floor((rt - fleet.slow_phase_s[rv]) / fleet.slow_period_s[rv]).astype(np.int64)
        prev = np.empty(m, dtype=np.int64)
        if m:
            prev[1:] = slot[:-1]
            first = np.ones(m, dtype=bool)
            first[1:] = rv[1:] != rv[:-1]
            prev[first] = last_slot[rv[first]]
            last = np.ones(m, dtype=bool)
            last[:-1] = rv[1:] != rv[:-1]
            last_slot[rv[last]] = slot[last]
        slow = slot != prev

        # oil life
        after_reset = rt >= reset_t[rv]
        life = fleet.oil_life_km[rv]
        oil = np.where(after_reset, 100.0 - (odo - new_ref_odo[rv]) / life * 100.0,
                       oil_ref_pct[rv] - (odo - oil_ref_odo[rv]) / life * 100.0)
        oil = np.clip(oil, 0.0, 100.0)

        # ---- reported values ---------------------------------------------------------------
        odo_km_rep = odo.copy()
        for v, (tr, km) in plan.rollback.items():
            sel = (rv == v) & (rt >= tr)
            if sel.any():
                odo_km_rep[sel] -= km
                if ("ROLLBACK", v) not in recorded:
                    i = int(np.argmax(sel))
                    recorded.add(("ROLLBACK", v))
                    truth.fault(v, "ROLLBACK", rt[i], f"odometer set back by {km:.1f} km",
                                odo[i], odo[i] - km)
        spike_rows = []
        for v, s in list(spike_pending.items()):
            if s[0] >= d1:
                continue
            sel = np.nonzero((rv == v) & (rt >= s[0]))[0]
            if len(sel):
                i = int(sel[0])
                odo_km_rep[i] += s[1]
                spike_rows.append(i)
                truth.fault(v, "SPIKE", rt[i], f"lone reading +{s[1]:.1f} km", odo[i], odo[i] + s[1])
                del spike_pending[v]
        miles = fleet.odo_miles[rv].copy()
        for v, tu in plan.unit_change.items():
            sel = (rv == v) & (rt >= tu)
            if sel.any():
                miles |= sel
                if ("UNIT_CHANGE", v) not in recorded:
                    i = int(np.argmax(sel))
                    recorded.add(("UNIT_CHANGE", v))
                    truth.fault(v, "UNIT_CHANGE", rt[i], f"odometer unit km -> {mi_sp[v]}", odo[i], odo[i])
        for v, (gs, ge) in plan.gap.items():
            for kind, tt in (("start", gs), ("end", ge)):
                if d0 <= tt < d1:
                    truth.gap_probe(v, kind, tt, float(day.lin(day.key([v], [tt]), ODO)[0]))
        odo_val = np.round(np.where(miles, odo_km_rep / C.KM_PER_MILE, odo_km_rep), 1)
        odo_unit = np.where(miles, mi_sp[rv], km_sp[rv])

        soc_val = np.round(soc, 1)
        pw = np.where(charging, power * rng_read.uniform(0.99, 1.01, m), 0.0)
        wu = watt_kw[rv]
        watt_val = np.where(wu, np.round(pw, 2), np.round(pw * 1000.0, 0))
        dc = charging & (power > 22.0)
        volt = np.where(dc, 340.0 + 0.9 * soc + rng_read.uniform(-2, 2, m),
                        np.where(plugged, grid_volt[rv] * rng_read.uniform(0.995, 1.005, m), 0.0))
        volt_val = np.round(volt, 1)
        amp_val = np.round(np.where(charging & (volt > 0), pw * 1000.0 / np.maximum(volt, 1.0), 0.0), 1)
        eadd_val = np.round(eadd, 2)
        noise = np.where(awake_r, 5.0, 3.0) / 111320.0
        lat_val = np.round(lat + rng_read.normal(0, 1, m) * noise, 6)
        lon_val = np.round(lon + rng_read.normal(0, 1, m) * noise / np.cos(np.radians(lat)), 6)
        head = np.where(driving, (heading + rng_read.uniform(-8, 8, m)) % 360.0, heading)
        head_val = np.round(head, 1)
        tires = tire_pressure(fleet, rv, rt) + rng_read.uniform(-1.5, 1.5, (m, 4))
        tu_r = tire_unit[rv]
        tires_conv = np.where((tu_r == "bar")[:, None], np.round(tires / C.KPA_PER_BAR, 3),
                              np.where((tu_r == "psi")[:, None], np.round(tires / C.KPA_PER_PSI, 1),
                                       np.round(tires, 1)))
        oil_val = np.round(oil, 1)
        fuel_val = np.round(fuel, 1)
        lv_val = np.round(np.clip(lv_soc(fleet, rv, rt) + rng_read.uniform(-1.5, 1.5, m), 0, 100), 1)

        # ids and times
        eid = uuids(rng_ids, m)
        did = uuids(rng_ids, m)
        lag = np.where(awake_r, rng_read.uniform(2.0, 40.0, m), rng_read.uniform(20.0, 600.0, m))
        lag = np.where(lag_small[rv], rng_read.uniform(0.5, 4.0, m), lag)
        oem_ms = (rt * 1000.0).astype(np.int64)
        ret_ms = oem_ms + (lag * 1000.0).astype(np.int64)
        deliv_ms = ret_ms + rng_read.integers(200, 3000, m)

        # string overrides (bad values, signal errors)
        ovr = {k: np.full(m, None, dtype=object) for k in ("odo_val", "odo_unit", "soc_val", "fuel_val",
                                                             "lv_val", "t_fl")}
        errs = {k: np.full(m, None, dtype=object) for k in ("err_loc", "err_tires", "err_soc", "err_fuel",
                                                              "err_lv")}
        for v, (tr, sig) in plan.revoked.items():
            sel = (rv == v) & (rt >= tr)
            if sel.any():
                errs["err_loc" if sig == "location-preciselocation" else "err_tires"][sel] = REVOKED_JSON
                if ("REVOKED", v) not in recorded:
                    recorded.add(("REVOKED", v))
                    truth.fault(v, "PERMISSION_REVOKED", tr, f"{sig} permission revoked by the owner")
        sig_col = {"odometer-traveleddistance": ("odo_val", False),
                   "tractionbattery-stateofcharge": ("soc_val", False),
                   "internalcombustionengine-fuellevel": ("fuel_val", False),
                   "lowvoltagebattery-stateofcharge": ("lv_val", True),
                   "wheel-tires": ("t_fl", True)}
        for b in plan.bad_values:
            v, tb, sig, raw, unit, applied = b
            if applied or tb >= d1:
                continue
            col, needs_slow = sig_col[sig]
            cand = (rv == v) & (rt >= tb)
            if needs_slow:
                cand &= slow
            if sig == "wheel-tires":
                cand &= np.array([x is None for x in errs["err_tires"]], dtype=bool)
            idx = np.nonzero(cand)[0]
            if not len(idx):
                continue
            i = int(idx[0])
            b[5] = True
            if unit is not None:
                ovr["odo_unit"][i] = unit
                detail = f"{sig}: unknown unit {unit!r}"
            else:
                if raw == "STR":
                    raw = '"%s"' % odo_val[i]
                ovr[col][i] = raw
                detail = f"{sig}: bad value {raw}"
            truth.fault(v, "BAD_VALUE", rt[i], detail, event_id=str(eid[i]),
                        odometer_before_km=odo[i] if sig.startswith("odometer") else None)
        n_transient = 0
        if plan.enabled and m:
            pick = np.nonzero(rng_read.random(m) < plan.transient_error_rate)[0]
            for i in pick:
                v = int(rv[i])
                opts = ["err_loc"] + (["err_soc"] if ev_mask[v] else []) + (["err_fuel"] if fuel_mask[v] else [])
                if slow[i]:
                    opts += ["err_lv", "err_tires"]
                k = opts[int(rng_read.integers(0, len(opts)))]
                if errs[k][i] is None and not (k == "err_soc" and ovr["soc_val"][i] is not None) \
                        and not (k == "err_fuel" and ovr["fuel_val"][i] is not None) \
                        and not (k == "err_lv" and ovr["lv_val"][i] is not None) \
                        and not (k == "err_tires" and ovr["t_fl"][i] is not None):
                    errs[k][i] = TRANSIENT_JSON
                    n_transient += 1

        # triggers
        trig = rtrig.copy()
        dflt = np.where(driving, TG_ODO, np.where(charging, TG_SOC,
                        np.where(slow, TG_LV, np.where(ev_mask[rv], TG_SOC, TG_FUEL))))
        trig = np.where(trig < 0, dflt, trig)
        trig_json = np.where(wh_strtrig[rv], np.array(TRIGGER_STR, dtype=object)[trig],
                             np.array(TRIGGER_OBJ, dtype=object)[trig])

        # DTC lists
        dtc_json = np.full(m, "[]", dtype=object)
        if dtc_vehicles:
            for i in np.nonzero(slow & np.isin(rv, list(dtc_vehicles)))[0]:
                v, t = int(rv[i]), float(rt[i])
                act = [{"code": c, "timestamp": _iso(fs)} for c, fs, cl in fleet.dtcs[v]
                       if fs <= t and (cl is None or t < cl)]
                dtc_json[i] = dumps(act)

        # late / duplicate selection (VEHICLE_STATE only)
        late = np.zeros(m, dtype=bool)
        dup = np.zeros(m, dtype=bool)
        late_target = np.zeros(m, dtype=np.int64)
        if plan.enabled and m:
            late = rng_read.random(m) < plan.late_rate
            dup = (~late) & (rng_read.random(m) < plan.dup_rate)
            late_days = rng_read.integers(1, 6, m)
            late_target = np.minimum(d + late_days, cfg.days - 1)
            late &= late_target > d  # on the last day there is no later day to land in
            for i in spike_rows:  # keep the spike readings in place
                late[i] = dup[i] = False
            deliv_late = ((fleet.t0 + late_target * DAY + rng_read.uniform(0, DAY - 60, m)) * 1000).astype(np.int64)
            deliv_ms = np.where(late, deliv_late, deliv_ms)

        deliv_num = np.where(wh_seconds[rv], deliv_ms // 1000, deliv_ms)
        ev_r = ev_mask[rv]
        df = pl.DataFrame({
            "eid": eid, "vfrag": _S(vfrag[rv]), "ev": ev_r, "ice_or_phev": fuel_mask[rv], "slow": slow,
            "has_watt": has_watt[rv], "watt_unit": _S(watt_unit[rv]), "volt_amp": fleet.volt_amp[rv],
            "has_ea": fleet.reports_energy_added[rv],
            "oem_ms": oem_ms, "ret_ms": ret_ms,
            "noem_odo": noem["odometer-traveleddistance"][rv], "noem_loc": noem["location-preciselocation"][rv],
            "noem_tires": noem["wheel-tires"][rv], "noem_oil": noem["internalcombustionengine-oillife"][rv],
            "noem_fuel": noem["internalcombustionengine-fuellevel"][rv],
            "noem_lv": noem["lowvoltagebattery-stateofcharge"][rv],
            "odo_f": odo_val, "odo_unit_d": _S(odo_unit), "soc_f": soc_val, "nominal_val": _S(nominal_str[rv]),
            "charging": charging, "plugged": plugged, "watt_f": watt_val, "volt_f": volt_val, "amp_f": amp_val,
            "eadd_f": eadd_val, "lat_f": lat_val, "lon_f": lon_val, "head_f": head_val,
            "direction": _S(compass(head_val).astype(object)),
            "t_fl_f": tires_conv[:, 0], "t_fr_f": tires_conv[:, 1], "t_rl_f": tires_conv[:, 2],
            "t_rr_f": tires_conv[:, 3], "tire_unit": _S(tu_r), "oil_f": oil_val, "fuel_f": fuel_val, "lv_f": lv_val,
            "dtc_json": _S(dtc_json), "trig_json": _S(trig_json), "webhook_tail": _S(v_tail[rv]),
            **{"ovr_" + k: _S(a) for k, a in ovr.items()},
            **{k: _S(a) for k, a in errs.items()},
        }, strict=False)
        s = pl.col
        df = df.with_columns(
            iso_ms(s("oem_ms")).alias("oem_iso"), iso_ms(s("ret_ms")).alias("ret_iso"),
            pl.coalesce(s("ovr_odo_val"), s("odo_f").cast(pl.String)).alias("odo_val"),
            pl.coalesce(s("ovr_odo_unit"), s("odo_unit_d")).alias("odo_unit"),
            pl.coalesce(s("ovr_soc_val"), s("soc_f").cast(pl.String)).alias("soc_val"),
            s("charging").cast(pl.String), s("plugged").cast(pl.String),
            s("watt_f").cast(pl.String).alias("watt_val"), s("volt_f").cast(pl.String).alias("volt_val"),
            s("amp_f").cast(pl.String).alias("amp_val"), s("eadd_f").cast(pl.String).alias("eadd_val"),
            s("lat_f").cast(pl.String).alias("lat"), s("lon_f").cast(pl.String).alias("lon"),
            s("head_f").cast(pl.String).alias("heading"),
            pl.coalesce(s("ovr_t_fl"), s("t_fl_f").cast(pl.String)).alias("t_fl"),
            s("t_fr_f").cast(pl.String).alias("t_fr"), s("t_rl_f").cast(pl.String).alias("t_rl"),
            s("t_rr_f").cast(pl.String).alias("t_rr"),
            s("oil_f").cast(pl.String).alias("oil_val"),
            pl.coalesce(s("ovr_fuel_val"), s("fuel_f").cast(pl.String)).alias("fuel_val"),
            pl.coalesce(s("ovr_lv_val"), s("lv_f").cast(pl.String)).alias("lv_val"),
        )
        # encode in slices: bounds the memory of Polars' intermediate string columns
        enc = pl.concat([build_state_lines(df.slice(o, ENCODE_ROWS)) for o in range(0, max(len(df), 1), ENCODE_ROWS)])
        del df
        prefix = enc["prefix"]
        tail = enc["tail"]
        counts["signals"] += int(enc["signal_count"].sum())
        counts["vehicle_state"] += m
        counts["signal_errors"] += n_transient + int(sum((a == REVOKED_JSON).sum() for a in errs.values()))
        lines_s = pl.DataFrame({"p": prefix, "d": pl.Series(did), "n": pl.Series(deliv_num), "t": tail}).select(
            pl.concat_str([pl.col("p"), pl.col("d"), pl.lit('","deliveredAt":'), pl.col("n").cast(pl.String),
                           pl.col("t")]).alias("line"))["line"]
        lines = lines_s.to_list()

        fpd = cfg.files_per_day
        win_len = DAY / fpd
        win = np.clip(((deliv_ms / 1000.0 - d0) // win_len).astype(np.int64), 0, fpd - 1)

        # duplicates: re-sent later (same eventId), half of them with a new deliveryId/deliveredAt
        if plan.enabled:
            dup_idx = np.nonzero(dup)[0]
            if len(dup_idx):
                new_did = uuids(rng_ids, len(dup_idx))
                for j, i in enumerate(dup_idx):
                    v = int(rv[i])
                    dd = d + (0 if rng_read.random() < 0.5 else int(rng_read.integers(1, 6)))
                    dd = min(dd, cfg.days - 1)
                    w = int(win[i])
                    tw = int(rng_read.integers(0, fpd))
                    if dd == d and tw <= w:
                        tw = w + 1
                    if tw >= fpd:
                        if dd + 1 < cfg.days:
                            dd, tw = dd + 1, 0
                        else:
                            continue
                    if rng_read.random() < 0.5:
                        line = lines[i]
                        detail = "identical re-delivery"
                    else:
                        nd = int((fleet.t0 + dd * DAY + (tw + rng_read.random()) * win_len) * 1000)
                        nd = max(nd, int(deliv_ms[i]) + 1000)
                        num = nd // 1000 if wh_seconds[v] else nd
                        line = prefix[int(i)] + str(new_did[j]) + '","deliveredAt":' + str(num) + tail[int(i)]
                        detail = "retry with a new deliveryId and deliveredAt"
                    writer.redeliver(dd, tw, line, "DUPLICATE", str(eid[i]), float(rt[i]), detail, v)
            for i in np.nonzero(late)[0]:
                tgt = int(late_target[i])
                tw = int(np.clip((deliv_ms[i] / 1000.0 - (fleet.t0 + tgt * DAY)) // win_len, 0, fpd - 1))
                writer.redeliver(tgt, tw, lines[i], "LATE", str(eid[i]), float(rt[i]),
                                 f"delivered {tgt - d} day(s) late", int(rv[i]))

        del prefix, tail, enc, lines_s

        # vehicle errors and verify events of the day
        extra = []  # (deliv_ms, line)
        for (v, te, ei, resolved) in plan.vehicle_errors:
            for state, tt in (("ERROR", te), ("RESOLVED", resolved)):
                if tt is None or not (d0 <= tt < d1):
                    continue
                typ, code, desc, res = C.VEHICLE_ERRORS[ei]
                e_id, d_id = uuids(rng_err, 2)
                dm = int(tt * 1000) + int(rng_err.integers(200, 3000))
                wh = int(fleet.webhook[v])
                body = {"eventId": str(e_id), "eventType": "VEHICLE_ERROR",
                        "data": {"user": {"id": str(fleet.user_id[v])},
                                 "vehicle": _vehicle_obj(fleet, v),
                                 "errors": [{"type": typ, "code": code, "state": state, "description": desc,
                                             "resolution": {"type": res}}]},
                        "meta": {"version": "4.0", "deliveryId": str(d_id),
                                 "deliveredAt": dm // 1000 if wh_seconds[v] else dm,
                                 "webhookId": str(webhook_ids[wh]), "webhookName": C.WEBHOOKS[wh][0],
                                 "mode": "TEST"}}
                extra.append((dm, dumps(body)))
                counts["vehicle_error"] += 1
                truth.fault(v, "VEHICLE_ERROR", tt, f"{typ}/{code} {state}", event_id=str(e_id))
        if d == 0 or d == cfg.days // 2:
            whs = range(len(C.WEBHOOKS)) if d == 0 else [0]
            for wh in whs:
                e_id, d_id = uuids(rng_err, 2)
                dm = int((d0 + 30 + 7 * wh) * 1000)
                challenge = "".join("%02x" % b for b in rng_err.integers(0, 256, 16))
                body = {"eventId": str(e_id), "eventType": "VERIFY", "data": {"challenge": challenge},
                        "meta": {"version": "4.0", "deliveryId": str(d_id),
                                 "deliveredAt": dm // 1000 if C.WEBHOOKS[wh][2] else dm,
                                 "webhookId": str(webhook_ids[wh]), "webhookName": C.WEBHOOKS[wh][0],
                                 "mode": "TEST"}}
                extra.append((dm, dumps(body)))
                counts["verify"] += 1

        # assemble windows: own lines sorted by deliveredAt
        keep_rows = np.nonzero(~late)[0]
        all_ms = np.concatenate([deliv_ms[keep_rows], np.array([e[0] for e in extra], dtype=np.int64)])
        all_lines = [lines[i] for i in keep_rows] + [e[1] for e in extra]
        all_win = np.clip(((all_ms / 1000.0 - d0) // win_len).astype(np.int64), 0, fpd - 1)
        o = np.lexsort((np.arange(len(all_ms)), all_ms))
        windows = [[] for _ in range(fpd)]
        for i in o:
            windows[all_win[i]].append(all_lines[i])
        del lines, all_lines
        writer.write_day(d, windows)
        del windows

        # truth of the day
        truth.add_day(d, d0, odo_d0, odo_d1)
        # oil bookkeeping: crossing of the due threshold, resets
        oil_end_pre = oil_ref_pct - (odo_d1 - oil_ref_odo) / fleet.oil_life_km * 100.0
        oil_end_post = 100.0 - (odo_d1 - new_ref_odo) / fleet.oil_life_km * 100.0
        oil_end = np.where(go, oil_end_post, oil_end_pre)
        for v in np.nonzero(go)[0]:
            truth.oil_reset(int(v), float(reset_t[v]), float(new_ref_odo[v]))
        start_val = np.where(go, 100.0, oil_d0)
        cross = (~np.isnan(oil_end)) & (start_val > OIL_DUE_PCT) & (oil_end <= OIL_DUE_PCT)
        for v in np.nonzero(cross)[0]:
            v = int(v)
            if go[v]:
                target = new_ref_odo[v] + (100.0 - OIL_DUE_PCT) / 100.0 * fleet.oil_life_km[v]
            else:
                target = oil_ref_odo[v] + (oil_ref_pct[v] - OIL_DUE_PCT) / 100.0 * fleet.oil_life_km[v]
            truth.oil_cross(v, day.first_reach(v, float(target)), float(target))
        oil_ref_pct = np.where(go, 100.0, oil_ref_pct)
        oil_ref_odo = np.where(go, new_ref_odo, oil_ref_odo)
        # Unclipped: the gauge stops at 0 %, but the due time and odometer extrapolate the
        # oil's real wear (truth clips only the value it reports).
        truth.oil_end_of_day(d, oil_end)

    writer.close()
    counts_faults = truth.write(sessions, rng_truth, truth_dir)
    deliveries = counts["vehicle_state"] + counts["vehicle_error"] + counts["verify"]
    summary = SimulationSummary(
        files=writer.files, lines=writer.lines, deliveries=deliveries,
        vehicle_state=counts["vehicle_state"], vehicle_error=counts["vehicle_error"], verify=counts["verify"],
        duplicates=writer.duplicates, late=writer.late, malformed=writer.malformed, signals=counts["signals"],
        signal_errors=counts["signal_errors"], vehicles=n, days=cfg.days,
        charging_sessions=truth.n_sessions, faults=counts_faults,
        landing_dir=str(landing_dir), truth_dir=str(truth_dir))
    assert summary.lines == deliveries + writer.duplicates + writer.malformed, "line accounting"
    truth.write_summary(summary, truth_dir)
    return summary


def _S(a) -> pl.Series:
    return pl.Series(np.asarray(a, dtype=object).tolist(), dtype=pl.String)


def _weekday(t: float) -> bool:
    return datetime.fromtimestamp(t, tz=timezone.utc).weekday() < 5


def _vehicle_obj(fleet, v: int) -> dict:
    veh = {"id": str(fleet.vehicle_id[v]), "make": fleet.make[v], "model": fleet.model[v],
           "year": int(fleet.year[v])}
    if fleet.vin[v]:
        veh["vin"] = fleet.vin[v]
    return veh
