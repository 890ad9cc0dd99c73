"""The static fleet: who owns which car, its true figures, habits and places.

``build_fleet`` runs six stages in a fixed order, each drawing from the one fleet RNG stream:
identity & models, battery & energy, places, habits & charging, maintenance truth, reading
cadence. The order of the draws *is* the simulator's output: reordering them (or drawing one
number more or less) changes every file, so a new draw goes at the end of a stage's draws only
when the bytes are meant to change.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from . import catalog
from .geo import offset
from .ids import uuids, vin

DAY = 86400.0
VIN_PLANT_CODES = "ABCFKLMPRSTUZ"


@dataclass
class Fleet:
    size: int  # number of vehicles
    start_s: float  # epoch seconds of the first simulated UTC midnight
    end_s: float
    # identity & models
    vehicle_id: np.ndarray
    user_id: np.ndarray
    model_index: np.ndarray  # into catalog.MODELS
    make: list
    model: list
    year: np.ndarray
    vin: list  # None where the make's payload omits it
    powertrain: np.ndarray  # catalog.BEV | PHEV | ICE
    # battery & energy
    nominal_capacity_kwh: np.ndarray  # nan for ICE
    state_of_health: np.ndarray  # usable / nominal; nan for ICE
    usable_capacity_kwh: np.ndarray
    consumption_kwh_per_km: np.ndarray  # nan for ICE
    fuel_l_per_km: np.ndarray  # nan for BEV
    tank_capacity_l: np.ndarray
    dc_max_kw: np.ndarray  # nan: no DC
    ac_max_kw: np.ndarray
    # places
    metro_index: np.ndarray  # into catalog.METROS
    home_lat: np.ndarray
    home_lon: np.ndarray
    commuter: np.ndarray
    commute_km: np.ndarray
    work_lat: np.ndarray  # nan: not a commuter
    work_lon: np.ndarray
    public_stations: np.ndarray  # (metros, k, 3): lat, lon, kW
    # habits & charging
    departure_hour: np.ndarray  # local hour of the morning commute
    hours_at_work: np.ndarray
    average_speed_kmh: np.ndarray
    idle_day_probability: np.ndarray
    has_home_charger: np.ndarray
    home_charger_kw: np.ndarray  # nan for ICE
    has_work_charger: np.ndarray
    plugs_in_every_night: np.ndarray
    plug_in_below_soc_pct: np.ndarray  # otherwise plugs in at home below this SoC
    charge_limit_pct: np.ndarray
    scheduled_charging: np.ndarray  # home charging waits for the off-peak start
    # starting state
    odometer_in_miles: np.ndarray
    odometer_start_km: np.ndarray
    start_soc_pct: np.ndarray  # nan for ICE
    start_fuel_pct: np.ndarray  # nan for BEV
    webhook_index: np.ndarray  # into catalog.WEBHOOKS
    # how the make reports (catalog.MAKES)
    reports_energy_added: np.ndarray
    wattage_unit: list  # None: no charge-wattage signal
    reports_voltage_amperage: np.ndarray
    tire_unit: list
    km_spelling: list
    mile_spelling: list
    without_oem_time: list  # per vehicle frozenset of signal codes delivered without meta.oemUpdatedAt
    newer_signals: list  # per vehicle frozenset of catalog.NEWER_SIGNALS its make sends
    # maintenance truth
    oil_life_km: np.ndarray  # km from 100 % to 0 % oil life; nan for BEV
    start_oil_life_pct: np.ndarray
    oil_change_below_pct: np.ndarray  # nan: owner does not change oil in the window
    tire_baseline_kpa: np.ndarray  # (n, 4) kPa: FL, FR, RL, RR
    tire_seep_kpa_per_day: np.ndarray  # (n, 4) slow loss of every tyre
    tire_leak_kpa_per_day: np.ndarray  # (n, 4) (0 when not leaking)
    tire_leak_start_s: np.ndarray  # (n, 4) epoch s (inf)
    tire_reinflated_s: np.ndarray  # (n, 4) epoch s (inf)
    low_voltage_baseline_pct: np.ndarray  # 12 V battery state of charge at the start
    low_voltage_rate_pct_per_day: np.ndarray  # negative for weak batteries
    trouble_codes: list  # per vehicle list of (code, first_seen_s, cleared_s or None)
    # reading cadence
    grid_offset_s: np.ndarray
    asleep_keep_every: np.ndarray  # keep every m-th grid slot while asleep
    asleep_phase: np.ndarray
    slow_period_s: np.ndarray
    slow_phase_s: np.ndarray


def _choice_weighted(rng, items, weights, size):
    w = np.asarray(weights, dtype=float)
    return rng.choice(len(items), size=size, p=w / w.sum())


def build_fleet(cfg, rng: np.random.Generator) -> Fleet:
    size = cfg.vehicles
    start_s = datetime(cfg.start.year, cfg.start.month, cfg.start.day, tzinfo=timezone.utc).timestamp()
    end_s = start_s + cfg.days * DAY
    identity = _identity_and_models(size, rng)
    powertrain = identity["powertrain"]
    models = [catalog.MODELS[i] for i in identity["model_index"]]
    energy = _battery_and_energy(models, powertrain, rng)
    places = _places(size, rng)
    habits = _habits_and_charging(powertrain, places["commuter"], energy["ac_max_kw"], rng)
    starting = _starting_state(identity["year"], powertrain, places["metro_index"], rng)
    reporting = _reporting(identity["make"], powertrain)
    maintenance = _maintenance_truth(cfg, start_s, powertrain, rng)
    cadence = _reading_cadence(cfg, size, rng)
    return Fleet(size=size, start_s=start_s, end_s=end_s, **identity, **energy, **places, **habits,
                 **starting, **reporting, **maintenance, **cadence)


def _identity_and_models(size: int, rng: np.random.Generator) -> dict:
    """Powertrain mix ~50/20/30, the model within the powertrain, year, ids (a few owners have two
    cars) and VIN."""
    bev_count = int(round(0.5 * size))
    phev_count = int(round(0.2 * size))
    powertrain = rng.permutation(np.array([catalog.BEV] * bev_count + [catalog.PHEV] * phev_count
                                          + [catalog.ICE] * (size - bev_count - phev_count)))
    model_index = np.empty(size, dtype=np.int64)
    for kind in (catalog.BEV, catalog.PHEV, catalog.ICE):
        candidates = [i for i, m in enumerate(catalog.MODELS) if m.powertrain == kind]
        selected = powertrain == kind
        picks = _choice_weighted(rng, candidates, [catalog.MODELS[i].weight for i in candidates], int(selected.sum()))
        model_index[selected] = np.array(candidates)[picks]
    models = [catalog.MODELS[i] for i in model_index]
    year = np.array([rng.integers(m.years[0], m.years[1] + 1) for m in models], dtype=np.int64)

    vehicle_id = uuids(rng, size)
    user_id = uuids(rng, size)
    second_car = rng.random(size) < 0.06
    for i in np.nonzero(second_car)[0]:
        if i > 0:
            user_id[i] = user_id[rng.integers(0, i)]

    vins = []
    for i, m in enumerate(models):
        plant = VIN_PLANT_CODES[int(rng.integers(0, len(VIN_PLANT_CODES)))]
        full_vin = vin(m.wmi, m.vds, int(year[i]), plant, int(rng.integers(1, 999999)))
        vins.append(None if rng.random() < 0.05 else full_vin)
    return dict(vehicle_id=vehicle_id, user_id=user_id, model_index=model_index, make=[m.make for m in models],
                model=[m.model for m in models], year=year, vin=vins, powertrain=powertrain)


def _battery_and_energy(models: list, powertrain: np.ndarray, rng: np.random.Generator) -> dict:
    """Capacity and state of health, consumption (per-vehicle spread), fuel use, charge powers."""
    size = len(models)
    has_battery = powertrain != catalog.ICE
    nominal_capacity_kwh = np.array([m.nominal_kwh if m.nominal_kwh else np.nan for m in models])
    state_of_health = np.where(powertrain == catalog.ICE, np.nan, rng.uniform(0.85, 1.0, size))
    typical_consumption = np.array([m.consumption_kwh_per_km or np.nan for m in models])
    consumption = typical_consumption * rng.uniform(0.92, 1.08, size)
    consumption = np.where(powertrain == catalog.BEV, np.clip(consumption, 0.14, 0.22), consumption)
    fuel_l_per_km = (np.array([(m.fuel_l_per_100km or np.nan) / 100.0 for m in models])
                     * rng.uniform(0.9, 1.12, size))
    return dict(
        nominal_capacity_kwh=nominal_capacity_kwh, state_of_health=state_of_health,
        usable_capacity_kwh=nominal_capacity_kwh * state_of_health,
        consumption_kwh_per_km=np.where(has_battery, consumption, np.nan),
        fuel_l_per_km=np.where(powertrain != catalog.BEV, fuel_l_per_km, np.nan),
        tank_capacity_l=np.array([m.tank_l or np.nan for m in models]),
        dc_max_kw=np.array([m.dc_max_kw or np.nan for m in models]),
        ac_max_kw=np.array([m.ac_max_kw or np.nan for m in models]),
    )


def _places(size: int, rng: np.random.Generator) -> dict:
    """Metro, home (within 20 km of its centre), work (commuters only) and the public stations."""
    metro_index = _choice_weighted(rng, catalog.METROS, [m[3] for m in catalog.METROS], size)
    home_lat = np.empty(size)
    home_lon = np.empty(size)
    work_lat = np.empty(size)
    work_lon = np.empty(size)
    commuter = rng.random(size) < 0.6
    commute_km = rng.uniform(6.0, 40.0, size)
    for i in range(size):
        metro_lat, metro_lon = catalog.METROS[metro_index[i]][1], catalog.METROS[metro_index[i]][2]
        home_lat[i], home_lon[i] = offset(metro_lat, metro_lon, 20.0 * math.sqrt(rng.random()), rng.uniform(0, 360))
        work_lat[i], work_lon[i] = offset(home_lat[i], home_lon[i], commute_km[i] / 1.3, rng.uniform(0, 360))
    per_metro = catalog.PUBLIC_STATIONS_PER_METRO
    stations = np.empty((len(catalog.METROS), per_metro, 3))
    for m, (_, metro_lat, metro_lon, _, _) in enumerate(catalog.METROS):
        for k in range(per_metro):
            lat, lon = offset(metro_lat, metro_lon, 3.0 + 15.0 * rng.random(),
                              360.0 * k / per_metro + rng.uniform(-20, 20))
            stations[m, k] = (lat, lon, catalog.PUBLIC_STATION_KW[k % len(catalog.PUBLIC_STATION_KW)])
    return dict(metro_index=metro_index, home_lat=home_lat, home_lon=home_lon, commuter=commuter,
                commute_km=commute_km, work_lat=np.where(commuter, work_lat, np.nan),
                work_lon=np.where(commuter, work_lon, np.nan), public_stations=stations)


def _habits_and_charging(powertrain: np.ndarray, commuter: np.ndarray, ac_max_kw: np.ndarray,
                         rng: np.random.Generator) -> dict:
    """When and how the owner drives, and where and when the car is plugged in."""
    size = len(powertrain)
    departure_hour = rng.uniform(6.0, 8.75, size)
    hours_at_work = rng.uniform(7.5, 9.5, size)
    average_speed_kmh = rng.uniform(32.0, 58.0, size)
    idle_day_probability = rng.choice([0.03, 0.08, 0.15, 0.35], size=size, p=[0.35, 0.35, 0.2, 0.1])

    has_battery = powertrain != catalog.ICE
    is_phev = powertrain == catalog.PHEV
    has_home_charger = has_battery & (rng.random(size) < np.where(is_phev, 0.92, 0.85))
    home_charger_kw = np.where(rng.random(size) < 0.55, 7.4, 11.0)
    home_charger_kw = np.where(has_battery, np.minimum(home_charger_kw, ac_max_kw), np.nan)
    has_work_charger = has_battery & commuter & (rng.random(size) < 0.35)
    plugs_in_every_night = has_battery & (is_phev | (rng.random(size) < 0.45))
    plug_in_below_soc_pct = rng.uniform(35.0, 65.0, size)
    charge_limit_pct = np.where(is_phev, 100.0, rng.choice([80.0, 80.0, 90.0, 90.0, 100.0], size=size))
    scheduled_charging = has_home_charger & (rng.random(size) < 0.3)
    return dict(departure_hour=departure_hour, hours_at_work=hours_at_work, average_speed_kmh=average_speed_kmh,
                idle_day_probability=idle_day_probability, has_home_charger=has_home_charger,
                home_charger_kw=home_charger_kw, has_work_charger=has_work_charger,
                plugs_in_every_night=plugs_in_every_night, plug_in_below_soc_pct=plug_in_below_soc_pct,
                charge_limit_pct=charge_limit_pct, scheduled_charging=scheduled_charging)


def _starting_state(year: np.ndarray, powertrain: np.ndarray, metro_index: np.ndarray,
                    rng: np.random.Generator) -> dict:
    """Odometer unit and reading (from the car's age), SoC and fuel at the start, the webhook."""
    size = len(year)
    miles_share = np.array([catalog.METROS[m][4] for m in metro_index])
    odometer_in_miles = rng.random(size) < miles_share
    age_years = np.maximum(0, 2026 - year) + rng.uniform(0.1, 0.9, size)
    odometer_start_km = np.round(age_years * rng.uniform(9000, 22000, size) + rng.uniform(50, 900, size), 3)
    start_soc_pct = np.where(powertrain != catalog.ICE, rng.uniform(45.0, 90.0, size), np.nan)
    start_fuel_pct = np.where(powertrain != catalog.BEV, rng.uniform(25.0, 95.0, size), np.nan)
    webhook_index = _choice_weighted(rng, catalog.WEBHOOKS, [w[1] for w in catalog.WEBHOOKS], size)
    return dict(odometer_in_miles=odometer_in_miles, odometer_start_km=odometer_start_km,
                start_soc_pct=start_soc_pct, start_fuel_pct=start_fuel_pct, webhook_index=webhook_index)


def _reporting(make: list, powertrain: np.ndarray) -> dict:
    """How each car's make reports its signals (no draws)."""
    has_battery = powertrain != catalog.ICE
    profiles = [catalog.MAKES[m] for m in make]
    return dict(
        reports_energy_added=np.array([p.energy_added for p in profiles]) & has_battery,
        wattage_unit=[p.wattage_unit if has_battery[i] else None for i, p in enumerate(profiles)],
        reports_voltage_amperage=np.array([p.voltage_amperage for p in profiles]) & has_battery,
        tire_unit=[p.tire_unit for p in profiles], km_spelling=[p.km_spelling for p in profiles],
        mile_spelling=[p.mi_spelling for p in profiles], without_oem_time=[p.no_oem_time for p in profiles],
        newer_signals=[p.newer for p in profiles],
    )


def _maintenance_truth(cfg, start_s: float, powertrain: np.ndarray, rng: np.random.Generator) -> dict:
    """Engine oil, tyres (slow seep, a few leaks, some re-inflated), the 12 V battery, trouble codes."""
    size = len(powertrain)
    span_s = max(cfg.days, 1) * DAY

    has_engine = powertrain != catalog.BEV
    oil_life_km = np.where(has_engine, rng.uniform(8000, 15000, size), np.nan)
    # a quarter of the engines are near or past due at the start, so that some get an oil change
    start_oil = np.where(rng.random(size) < 0.25, rng.uniform(3.0, 25.0, size), rng.uniform(25.0, 100.0, size))
    start_oil = np.where(has_engine, start_oil, np.nan)
    oil_change_below_pct = np.where(has_engine & (rng.random(size) < 0.6), rng.uniform(8.0, 22.0, size), np.nan)

    placard_kpa = rng.choice([220.0, 230.0, 240.0, 250.0, 260.0], size=size)
    baseline_kpa = placard_kpa[:, None] + rng.uniform(-3.0, 3.0, (size, 4))
    seep = rng.uniform(0.5, 1.0, (size, 4)) / 7.0
    leaking = rng.random((size, 4)) < 0.03
    leak = np.where(leaking, rng.uniform(1.0, 5.0, (size, 4)), 0.0)
    leak_start_s = np.where(leaking, start_s + rng.uniform(0.25, 0.8, (size, 4)) * span_s, np.inf)
    if cfg.days >= 14:  # baseline week stays clean on longer runs
        leak_start_s = np.where(leaking, np.maximum(leak_start_s, start_s + 7.5 * DAY), np.inf)
    reinflated = leaking & (rng.random((size, 4)) < 0.5)
    # re-inflated to baseline once, when about 15-20 % under-inflated
    drop_kpa = rng.uniform(0.15, 0.20, (size, 4)) * baseline_kpa
    reaches_drop_s = leak_start_s + drop_kpa / (leak + seep + 1e-9) * DAY
    reinflated_s = np.where(reinflated, reaches_drop_s + rng.uniform(0.1, 0.9, (size, 4)) * DAY, np.inf)

    low_voltage_baseline_pct = rng.uniform(75.0, 95.0, size)
    weak = rng.random(size) < 0.05
    low_voltage_rate = np.where(weak, -rng.uniform(0.4, 1.2, size), 0.0)

    trouble_codes = []
    for _ in range(size):
        codes = []
        r = rng.random()
        if r < 0.12:
            code = catalog.DTC_CODES[int(rng.integers(0, len(catalog.DTC_CODES)))][0]
            # most appear in the window, a quarter of them before it
            first_seen = start_s + rng.uniform(0.05, 0.9) * span_s if r > 0.03 else start_s - rng.uniform(1, 20) * DAY
            first_seen = float(np.floor(first_seen))
            cleared = float(np.floor(first_seen + rng.uniform(1, 10) * DAY)) if rng.random() < 0.5 else None
            codes.append((code, first_seen, cleared))
        trouble_codes.append(codes)
    return dict(oil_life_km=oil_life_km, start_oil_life_pct=start_oil, oil_change_below_pct=oil_change_below_pct,
                tire_baseline_kpa=baseline_kpa, tire_seep_kpa_per_day=seep, tire_leak_kpa_per_day=leak,
                tire_leak_start_s=leak_start_s, tire_reinflated_s=reinflated_s,
                low_voltage_baseline_pct=low_voltage_baseline_pct, low_voltage_rate_pct_per_day=low_voltage_rate,
                trouble_codes=trouble_codes)


def _reading_cadence(cfg, size: int, rng: np.random.Generator) -> dict:
    """Each car's place on the reading grid, how sparse it reads asleep, and when it sends slow signals."""
    interval_s = cfg.interval_minutes * 60.0
    grid_offset_s = rng.uniform(0, interval_s, size)
    asleep_s = rng.uniform(3600, 7200, size)
    if cfg.asleep_interval_minutes is not None:
        asleep_s = np.full(size, cfg.asleep_interval_minutes * 60.0)
    asleep_keep_every = np.maximum(1, np.round(asleep_s / interval_s)).astype(np.int64)
    asleep_phase = rng.integers(0, 1 << 30, size) % asleep_keep_every
    slow_period_s = rng.choice([3.0, 4.0, 6.0], size=size) * 3600.0
    slow_phase_s = rng.uniform(0, 1, size) * slow_period_s
    return dict(grid_offset_s=grid_offset_s, asleep_keep_every=asleep_keep_every, asleep_phase=asleep_phase,
                slow_period_s=slow_period_s, slow_phase_s=slow_phase_s)
