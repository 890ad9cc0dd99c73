"""The static fleet: who owns which car, its true figures, habits and places."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from . import catalog as C
from .geo import offset
from .ids import uuids, vin

DAY = 86400.0


@dataclass
class Fleet:
    n: int
    t0: float  # epoch seconds of the first simulated UTC midnight
    t_end: float
    vehicle_id: np.ndarray
    user_id: np.ndarray
    model_idx: np.ndarray
    make: list
    model: list
    year: np.ndarray
    vin: list  # None where the make's payload omits it
    powertrain: np.ndarray
    nominal_kwh: np.ndarray  # nan for ICE
    soh: np.ndarray
    usable_kwh: np.ndarray
    cons_kwh_per_km: np.ndarray  # nan for ICE
    fuel_l_per_km: np.ndarray  # nan for BEV
    tank_l: np.ndarray
    dc_max_kw: np.ndarray  # nan: no DC
    ac_max_kw: np.ndarray
    metro: np.ndarray
    home_lat: np.ndarray
    home_lon: np.ndarray
    commuter: np.ndarray
    commute_km: np.ndarray
    work_lat: np.ndarray
    work_lon: np.ndarray
    dep_hour: np.ndarray
    work_hours: np.ndarray
    speed_kmh: np.ndarray
    idle_prob: np.ndarray
    has_home_charger: np.ndarray
    home_kw: np.ndarray
    work_charger: np.ndarray
    plug_always: np.ndarray
    plug_threshold: np.ndarray
    charge_limit: np.ndarray
    scheduled: np.ndarray
    odo_miles: np.ndarray
    odo_start_km: np.ndarray
    soc0: np.ndarray
    fuel0: np.ndarray
    webhook: np.ndarray
    reports_energy_added: np.ndarray
    wattage_unit: list
    volt_amp: np.ndarray
    tire_unit: list
    km_spelling: list
    mi_spelling: list
    no_oem: list  # per vehicle frozenset of signal codes
    # maintenance truth
    oil_life_km: np.ndarray
    oil0: np.ndarray
    oil_change_below: np.ndarray  # nan: owner does not change oil in the window
    tire_base: np.ndarray  # (n, 4) kPa: FL, FR, RL, RR
    tire_slow: np.ndarray  # (n, 4) kPa/day
    tire_leak: np.ndarray  # (n, 4) kPa/day (0 when not leaking)
    tire_leak_start: np.ndarray  # (n, 4) epoch s (inf)
    tire_reinflate: np.ndarray  # (n, 4) epoch s (inf)
    lv_base: np.ndarray
    lv_rate: np.ndarray  # %/day (negative for weak batteries)
    dtcs: list  # per vehicle list of (code, first_seen_s, cleared_s or None)
    # reading cadence
    grid_offset: np.ndarray  # seconds
    asleep_every: np.ndarray  # keep every m-th grid slot while asleep
    asleep_phase: np.ndarray
    slow_period_s: np.ndarray
    slow_phase_s: np.ndarray
    stations: np.ndarray  # (metros, k, 3): lat, lon, kW


def _choice_weighted(rng, items, weights, size):
    w = np.asarray(weights, dtype=float)
    return rng.choice(len(items), size=size, p=w / w.sum())


def build_fleet(cfg, rng: np.random.Generator) -> Fleet:
    n = cfg.vehicles
    t0 = datetime(cfg.start.year, cfg.start.month, cfg.start.day, tzinfo=timezone.utc).timestamp()
    t_end = t0 + cfg.days * DAY

    # powertrain mix ~50/20/30, then the model within the powertrain
    n_bev = int(round(0.5 * n))
    n_phev = int(round(0.2 * n))
    pt = rng.permutation(np.array([C.BEV] * n_bev + [C.PHEV] * n_phev + [C.ICE] * (n - n_bev - n_phev)))
    model_idx = np.empty(n, dtype=np.int64)
    for p in (C.BEV, C.PHEV, C.ICE):
        idx = [i for i, m in enumerate(C.MODELS) if m.powertrain == p]
        sel = pt == p
        model_idx[sel] = np.array(idx)[_choice_weighted(rng, idx, [C.MODELS[i].weight for i in idx], int(sel.sum()))]
    models = [C.MODELS[i] for i in model_idx]
    make = [m.make for m in models]
    year = np.array([rng.integers(m.years[0], m.years[1] + 1) for m in models], dtype=np.int64)

    vehicle_id = uuids(rng, n)
    user_id = uuids(rng, n)
    # a few owners have two cars
    shared = rng.random(n) < 0.06
    for i in np.nonzero(shared)[0]:
        if i > 0:
            user_id[i] = user_id[rng.integers(0, i)]

    plants = "ABCFKLMPRSTUZ"
    vins = []
    for i, m in enumerate(models):
        v = vin(m.wmi, m.vds, int(year[i]), plants[int(rng.integers(0, len(plants)))],
                int(rng.integers(1, 999999)))
        vins.append(None if rng.random() < 0.05 else v)

    nominal = np.array([m.nominal_kwh if m.nominal_kwh else np.nan for m in models])
    soh = np.where(pt == C.ICE, np.nan, rng.uniform(0.85, 1.0, n))
    usable = nominal * soh
    base_cons = np.array([m.consumption_kwh_per_km or np.nan for m in models])
    cons = base_cons * rng.uniform(0.92, 1.08, n)
    cons = np.where(pt == C.BEV, np.clip(cons, 0.14, 0.22), cons)
    fuel_l_per_km = np.array([(m.fuel_l_per_100km or np.nan) / 100.0 for m in models]) * rng.uniform(0.9, 1.12, n)
    tank = np.array([m.tank_l or np.nan for m in models])
    dc_max = np.array([m.dc_max_kw or np.nan for m in models])
    ac_max = np.array([m.ac_max_kw or np.nan for m in models])

    # places
    metro = _choice_weighted(rng, C.METROS, [m[3] for m in C.METROS], n)
    home_lat = np.empty(n)
    home_lon = np.empty(n)
    work_lat = np.empty(n)
    work_lon = np.empty(n)
    commuter = rng.random(n) < 0.6
    commute_km = rng.uniform(6.0, 40.0, n)
    for i in range(n):
        mlat, mlon = C.METROS[metro[i]][1], C.METROS[metro[i]][2]
        home_lat[i], home_lon[i] = offset(mlat, mlon, 20.0 * math.sqrt(rng.random()), rng.uniform(0, 360))
        work_lat[i], work_lon[i] = offset(home_lat[i], home_lon[i], commute_km[i] / 1.3, rng.uniform(0, 360))
    work_lat = np.where(commuter, work_lat, np.nan)
    work_lon = np.where(commuter, work_lon, np.nan)
    stations = np.empty((len(C.METROS), C.PUBLIC_STATIONS_PER_METRO, 3))
    for mi, (_, mlat, mlon, _, _) in enumerate(C.METROS):
        for k in range(C.PUBLIC_STATIONS_PER_METRO):
            la, lo = offset(mlat, mlon, 3.0 + 15.0 * rng.random(), 360.0 * k / C.PUBLIC_STATIONS_PER_METRO + rng.uniform(-20, 20))
            stations[mi, k] = (la, lo, C.PUBLIC_STATION_KW[k % len(C.PUBLIC_STATION_KW)])

    dep_hour = rng.uniform(6.0, 8.75, n)
    work_hours = rng.uniform(7.5, 9.5, n)
    speed = rng.uniform(32.0, 58.0, n)
    idle_prob = rng.choice([0.03, 0.08, 0.15, 0.35], size=n, p=[0.35, 0.35, 0.2, 0.1])

    ev = pt != C.ICE
    has_home = ev & (rng.random(n) < np.where(pt == C.PHEV, 0.92, 0.85))
    home_kw = np.where(rng.random(n) < 0.55, 7.4, 11.0)
    home_kw = np.where(ev, np.minimum(home_kw, ac_max), np.nan)
    work_charger = ev & commuter & (rng.random(n) < 0.35)
    plug_always = ev & ((pt == C.PHEV) | (rng.random(n) < 0.45))
    plug_threshold = rng.uniform(35.0, 65.0, n)
    charge_limit = np.where(pt == C.PHEV, 100.0, rng.choice([80.0, 80.0, 90.0, 90.0, 100.0], size=n))
    scheduled = has_home & (rng.random(n) < 0.3)

    miles_share = np.array([C.METROS[m][4] for m in metro])
    odo_miles = rng.random(n) < miles_share
    age = np.maximum(0, 2026 - year) + rng.uniform(0.1, 0.9, n)
    odo_start = np.round(age * rng.uniform(9000, 22000, n) + rng.uniform(50, 900, n), 3)
    soc0 = np.where(ev, rng.uniform(45.0, 90.0, n), np.nan)
    fuel0 = np.where(pt != C.BEV, rng.uniform(25.0, 95.0, n), np.nan)
    webhook = _choice_weighted(rng, C.WEBHOOKS, [w[1] for w in C.WEBHOOKS], n)

    profiles = [C.MAKES[mk] for mk in make]
    reports_ea = np.array([p.energy_added for p in profiles]) & ev
    wattage_unit = [p.wattage_unit if ev[i] else None for i, p in enumerate(profiles)]
    volt_amp = np.array([p.voltage_amperage for p in profiles]) & ev

    # oil (ICE, PHEV)
    has_oil = pt != C.BEV
    oil_life_km = np.where(has_oil, rng.uniform(8000, 15000, n), np.nan)
    # a quarter of the engines are near or past due at the start, so that some get an oil change
    oil0 = np.where(rng.random(n) < 0.25, rng.uniform(3.0, 25.0, n), rng.uniform(25.0, 100.0, n))
    oil0 = np.where(has_oil, oil0, np.nan)
    oil_change_below = np.where(has_oil & (rng.random(n) < 0.6), rng.uniform(8.0, 22.0, n), np.nan)

    # tyres
    placard = rng.choice([220.0, 230.0, 240.0, 250.0, 260.0], size=n)
    tire_base = placard[:, None] + rng.uniform(-3.0, 3.0, (n, 4))
    tire_slow = rng.uniform(0.5, 1.0, (n, 4)) / 7.0
    leaking = rng.random((n, 4)) < 0.03
    tire_leak = np.where(leaking, rng.uniform(1.0, 5.0, (n, 4)), 0.0)
    span = max(cfg.days, 1) * DAY
    leak_start = np.where(leaking, t0 + rng.uniform(0.25, 0.8, (n, 4)) * span, np.inf)
    if cfg.days >= 14:  # baseline week stays clean on longer runs
        leak_start = np.where(leaking, np.maximum(leak_start, t0 + 7.5 * DAY), np.inf)
    reinflate = np.full((n, 4), np.inf)
    reinf_sel = leaking & (rng.random((n, 4)) < 0.5)
    # re-inflated to baseline once, when about 15-20 % under-inflated
    drop = rng.uniform(0.15, 0.20, (n, 4)) * tire_base
    t_hit = leak_start + drop / (tire_leak + tire_slow + 1e-9) * DAY
    reinflate = np.where(reinf_sel, t_hit + rng.uniform(0.1, 0.9, (n, 4)) * DAY, np.inf)

    lv_base = rng.uniform(75.0, 95.0, n)
    weak = rng.random(n) < 0.05
    lv_rate = np.where(weak, -rng.uniform(0.4, 1.2, n), 0.0)

    dtcs = []
    for i in range(n):
        lst = []
        r = rng.random()
        if r < 0.12:
            code = C.DTC_CODES[int(rng.integers(0, len(C.DTC_CODES)))][0]
            first = t0 + rng.uniform(0.05, 0.9) * span if r > 0.03 else t0 - rng.uniform(1, 20) * DAY
            first = float(np.floor(first))
            cleared = float(np.floor(first + rng.uniform(1, 10) * DAY)) if rng.random() < 0.5 else None
            lst.append((code, first, cleared))
        dtcs.append(lst)

    interval = cfg.interval_minutes * 60.0
    grid_offset = rng.uniform(0, interval, n)
    asleep_s = rng.uniform(3600, 7200, n)
    if cfg.asleep_interval_minutes is not None:
        asleep_s = np.full(n, cfg.asleep_interval_minutes * 60.0)
    asleep_every = np.maximum(1, np.round(asleep_s / interval)).astype(np.int64)
    asleep_phase = rng.integers(0, 1 << 30, n) % asleep_every
    slow_period = rng.choice([3.0, 4.0, 6.0], size=n) * 3600.0
    slow_phase = rng.uniform(0, 1, n) * slow_period

    return Fleet(
        n=n, t0=t0, t_end=t_end, vehicle_id=vehicle_id, user_id=user_id, model_idx=model_idx,
        make=make, model=[m.model for m in models], year=year, vin=vins, powertrain=pt,
        nominal_kwh=nominal, soh=soh, usable_kwh=usable, cons_kwh_per_km=np.where(ev, cons, np.nan),
        fuel_l_per_km=np.where(pt != C.BEV, fuel_l_per_km, np.nan), tank_l=tank, dc_max_kw=dc_max,
        ac_max_kw=ac_max, metro=metro, home_lat=home_lat, home_lon=home_lon, commuter=commuter,
        commute_km=commute_km, work_lat=work_lat, work_lon=work_lon, dep_hour=dep_hour,
        work_hours=work_hours, speed_kmh=speed, idle_prob=idle_prob, has_home_charger=has_home,
        home_kw=home_kw, work_charger=work_charger, plug_always=plug_always,
        plug_threshold=plug_threshold, charge_limit=charge_limit, scheduled=scheduled,
        odo_miles=odo_miles, odo_start_km=odo_start, soc0=soc0, fuel0=fuel0, webhook=webhook,
        reports_energy_added=reports_ea, wattage_unit=wattage_unit, volt_amp=volt_amp,
        tire_unit=[p.tire_unit for p in profiles], km_spelling=[p.km_spelling for p in profiles],
        mi_spelling=[p.mi_spelling for p in profiles], no_oem=[p.no_oem_time for p in profiles],
        oil_life_km=oil_life_km, oil0=oil0, oil_change_below=oil_change_below,
        tire_base=tire_base, tire_slow=tire_slow, tire_leak=tire_leak, tire_leak_start=leak_start,
        tire_reinflate=reinflate, lv_base=lv_base, lv_rate=lv_rate, dtcs=dtcs,
        grid_offset=grid_offset, asleep_every=asleep_every, asleep_phase=asleep_phase,
        slow_period_s=slow_period, slow_phase_s=slow_phase, stations=stations,
    )

