"""Charging marts: session finding, energy, power, places, time of use and battery health on
hand-made readings, then against the simulator's ground truth on the default fleet."""

import json
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest
from conftest import mart, truth

from assets.marts.charging.assets import ChargingConfig, Tariff, charging_marts
from assets.marts.charging.sessions import charging_sessions
from assets.marts.charging.time_of_use import load_profile, parse_windows, time_of_use

MONDAY = datetime(2026, 9, 7, tzinfo=UTC)
HOME = (52.3601, 4.9001)
WORK = (52.3901, 4.8301)
STATION = (52.3301, 4.9501)
METRICS = {"charging": "is_charging", "plugged": "is_plugged_in", "soc": "soc_pct", "energy": "energy_added_kwh",
           "power": "charge_power_kw", "odo": "odometer_km", "nominal": "battery_capacity_kwh"}


def snap(at: datetime, vehicle: str = "v1", place: tuple | None = None, **values) -> list[dict]:
    """The readings of one delivery: metric values by short name, and a place."""
    rows = [{"vehicle_id": vehicle, "reading_time": at, "metric": METRICS[k], "component": None,
             "value": float(v)} for k, v in values.items() if v is not None]
    if place is not None:
        rows += [{"vehicle_id": vehicle, "reading_time": at, "metric": m, "component": None, "value": v}
                 for m, v in (("latitude_deg", place[0]), ("longitude_deg", place[1]))]
    return rows


def frame(*deliveries: list[dict]) -> pl.DataFrame:
    rows = [r for d in deliveries for r in d]
    return pl.DataFrame(rows, schema={"vehicle_id": pl.String, "reading_time": pl.Datetime("us", "UTC"),
                                      "metric": pl.String, "component": pl.String, "value": pl.Float64}
                        ).with_columns(delivered_at=pl.col("reading_time"), event_id=pl.lit("e"))


def ac_session(start: datetime, *, vehicle: str = "v1", place=HOME, every_min: int = 15, plug_wait_min: int = 0,
               soc0: float = 30.0, limit: float = 80.0, kw: float = 7.0, usable: float = 60.0, odo: float = 1000.0,
               counter: bool = True, power: bool = True, idle_after_min: int = 60, skip: tuple = ()) -> list[list[dict]]:
    """A plug-in as a car reports it: plugged (waiting plug_wait_min), charging at kw from
    soc0 to the limit with a reading every every_min, then plugged and full, then unplugged.
    Readings whose index is in `skip` are missing."""
    out = [snap(start, vehicle, place, charging=0, plugged=1, soc=soc0, odo=odo, energy=5.5 if counter else None)]
    t0 = start + timedelta(minutes=plug_wait_min)
    hours_to_full = (limit - soc0) / 100 * usable / kw
    n = int(hours_to_full * 60 // every_min)
    for i in range(n + 1):
        t = t0 + timedelta(minutes=1 + i * every_min)
        h = (t - t0).total_seconds() / 3600
        if i not in skip:
            out.append(snap(t, vehicle, place, charging=1, plugged=1, soc=round(soc0 + kw * h / usable * 100, 1),
                            odo=odo, energy=round(kw * h, 2) if counter else None, power=kw if power else None))
    end = t0 + timedelta(hours=hours_to_full)
    full = (limit - soc0) / 100 * usable
    out.append(snap(end + timedelta(minutes=1), vehicle, place, charging=0, plugged=1, soc=limit, odo=odo,
                    energy=round(full, 2) if counter else None))
    out.append(snap(end + timedelta(minutes=idle_after_min), vehicle, place, charging=0, plugged=0, soc=limit, odo=odo,
                    energy=round(full, 2) if counter else None))
    return out


def test_sparse_hourly_readings_find_one_session_with_counter_energy_and_power():
    sessions = charging_sessions(frame(*ac_session(MONDAY.replace(hour=18), every_min=60)))
    assert sessions.height == 1
    s = sessions.row(0, named=True)
    assert s["energy_added_kwh"] == pytest.approx(30.0, abs=0.01)  # (80 - 30) % of 60 kWh
    assert s["energy_source"] == "energy_added"
    assert s["avg_power_kw"] == pytest.approx(7.0) and s["max_power_kw"] == pytest.approx(7.0)
    assert (s["soc_start_pct"], s["soc_end_pct"]) == (30.0, 80.0)
    assert not s["is_dc_fast"]
    # the estimated charging interval covers the charge, which the hourly readings do not
    hours = (s["charge_end_estimated_at"] - s["charge_start_estimated_at"]).total_seconds() / 3600
    assert hours == pytest.approx(30.0 / 7.0, rel=0.02)


def test_missing_readings_do_not_split_a_session():
    sessions = charging_sessions(frame(*ac_session(MONDAY.replace(hour=18), skip=(2, 3, 4, 9))))
    assert sessions.height == 1
    assert sessions["energy_added_kwh"][0] == pytest.approx(30.0, abs=0.01)


def test_session_across_midnight_is_one_session():
    sessions = charging_sessions(frame(*ac_session(MONDAY.replace(hour=22))))
    assert sessions.height == 1
    assert sessions["started_at"][0].date() != sessions["ended_at"][0].date()


def test_plugged_in_asleep_waiting_for_a_scheduled_start_counts_as_idle_time():
    # plugged in at 19:00, asleep (a reading every two hours), charging from 00:00
    plug = MONDAY.replace(hour=19)
    deliveries = ac_session(plug, plug_wait_min=300)
    # until the charge starts, the counter still shows the last session's 45 kWh: more than
    # this one adds, so counting it would show
    deliveries[0:1] = [snap(plug + timedelta(hours=h), place=HOME, charging=0, plugged=1, soc=30.0, odo=1000.0,
                            energy=45.0) for h in (0, 2, 4)]
    s = charging_sessions(frame(*deliveries)).row(0, named=True)
    assert s["plugged_in_at"] == plug
    assert s["started_at"] == plug + timedelta(minutes=301)
    assert s["energy_added_kwh"] == pytest.approx(30.0, abs=0.01)  # the stale 45 kWh before the start is ignored


def test_plugged_in_but_never_charging_is_no_session():
    deliveries = [snap(MONDAY + timedelta(hours=h), place=HOME, charging=0, plugged=1, soc=90.0, odo=1000.0)
                  for h in range(6)]
    assert charging_sessions(frame(*deliveries)).is_empty()


def test_stopping_at_the_charge_limit_takes_the_soc_after_and_the_estimated_capacity():
    # no counter, power signal: capacity from power integrated over the SoC gain
    s = charging_sessions(frame(*ac_session(MONDAY.replace(hour=18), counter=False, limit=80.0))).row(0, named=True)
    assert s["soc_end_pct"] == 80.0
    assert s["energy_source"] == "soc_x_estimated_capacity"
    assert s["energy_added_kwh"] == pytest.approx(30.0, rel=0.02)


def test_soc_times_nominal_capacity_without_counter_or_power():
    deliveries = ac_session(MONDAY.replace(hour=18), counter=False, power=False)
    deliveries.append(snap(MONDAY.replace(hour=17), nominal=64.0))
    s = charging_sessions(frame(*deliveries)).row(0, named=True)
    assert s["energy_source"] == "soc_x_nominal_capacity"
    assert s["energy_added_kwh"] == pytest.approx(0.5 * 64.0)
    assert s["power_source"] == "energy_over_time"
    assert s["avg_power_kw"] == pytest.approx(7.0 * 64 / 60, rel=0.05)  # energy over the estimated time


def test_unplug_and_driving_split_sessions_even_when_no_reading_shows_the_unplug():
    first = ac_session(MONDAY.replace(hour=8), idle_after_min=60)[:-1]  # the unplug reading is missing
    second = ac_session(MONDAY.replace(hour=14), place=WORK, odo=1012.0, soc0=60.0, limit=90.0)
    sessions = charging_sessions(frame(*first, *second))
    assert sessions.height == 2
    assert sessions["energy_added_kwh"].to_list() == pytest.approx([30.0, 18.0], abs=0.01)


def test_an_odometer_spike_does_not_split_a_session_and_resent_values_count_once():
    deliveries = ac_session(MONDAY.replace(hour=18))
    charging_readings = sum(1 for d in deliveries if any(r["metric"] == "is_charging" and r["value"] for r in d))
    spike_at = deliveries[5][0]["reading_time"] + timedelta(minutes=2)
    deliveries.append(snap(spike_at, odo=1500.0))  # a lone reading that the next one contradicts
    deliveries += deliveries[3:7]  # re-sent in later deliveries, same reading times
    sessions = charging_sessions(frame(*deliveries))
    assert sessions.height == 1
    assert sessions["charging_readings"][0] == charging_readings
    assert sessions["energy_added_kwh"][0] == pytest.approx(30.0, abs=0.01)


def test_dc_fast_above_22_kw():
    s = charging_sessions(frame(*ac_session(MONDAY.replace(hour=12), kw=120.0, every_min=5, place=STATION)))
    assert s["is_dc_fast"].to_list() == [True]
    assert s["avg_power_kw"][0] == pytest.approx(120.0)


def test_vehicle_without_cable_signal_uses_the_charging_flag():
    readings = frame(*ac_session(MONDAY.replace(hour=18))).filter(pl.col("metric") != "is_plugged_in")
    s = charging_sessions(readings)
    assert s.height == 1 and s["plugged_in_at"][0] == s["started_at"][0]


def _week_of_charging() -> pl.DataFrame:
    """Overnight at home every night, at work on two weekday afternoons, one DC stop."""
    deliveries, odo = [], 1000.0
    for d in range(7):
        day = MONDAY + timedelta(days=d)
        if d in (1, 3):
            deliveries += ac_session(day.replace(hour=10), place=WORK, odo=odo, soc0=50.0, limit=75.0)
            odo += 15.0
        if d == 5:
            deliveries += ac_session(day.replace(hour=13), place=STATION, odo=odo, kw=100.0, every_min=5,
                                     soc0=20.0, limit=80.0)
            odo += 15.0
        deliveries += ac_session(day.replace(hour=21), place=HOME, odo=odo, idle_after_min=6 * 60)
        odo += 30.0
    return frame(*deliveries)


def test_location_types_home_work_public_and_no_coordinates():
    sessions = charging_marts(_week_of_charging(), ChargingConfig())["charging_sessions"]
    kinds = sessions.group_by("location_type").len().sort("location_type")
    assert dict(kinds.iter_rows()) == {"home": 7, "work": 2, "public": 1}
    assert not {"latitude_deg", "longitude_deg", "lat", "lon"} & set(sessions.columns)
    assert set(sessions["area"]) == {"52.3,4.9", "52.3,4.8"}  # 0.1-degree cells only


def test_time_of_use_split_and_cost():
    # 10 kW from 15:00 to 17:00 local on a Monday; peak 16:00-21:00
    session = pl.DataFrame({
        "session_id": ["s"], "vehicle_id": ["v1"], "location_type": ["home"], "grid_energy_kwh": [20.0],
        "charge_start_estimated_at": [MONDAY.replace(hour=15)], "charge_end_estimated_at": [MONDAY.replace(hour=17)],
    })
    split = time_of_use(session, "UTC", ["16:00-21:00"], peak_on_weekends=False).row(0, named=True)
    assert (split["peak_energy_kwh"], split["off_peak_energy_kwh"]) == pytest.approx((10.0, 10.0))
    # the same hours in Amsterdam (UTC+2 in September) are 17:00-19:00: all peak
    split = time_of_use(session, "Europe/Amsterdam", ["16:00-21:00"], peak_on_weekends=False).row(0, named=True)
    assert split["peak_energy_kwh"] == pytest.approx(20.0)
    # on a Saturday, weekends are off-peak unless configured
    saturday = session.with_columns(pl.col("charge_start_estimated_at", "charge_end_estimated_at") + timedelta(days=5))
    assert time_of_use(saturday, "UTC", ["16:00-21:00"], False)["peak_energy_kwh"][0] == 0.0
    assert time_of_use(saturday, "UTC", ["16:00-21:00"], True)["peak_energy_kwh"][0] == pytest.approx(10.0)

    config = ChargingConfig(home=Tariff(peak_per_kwh=0.5, off_peak_per_kwh=0.2, session_fee=1.0), ac_efficiency=1.0)
    readings = frame(*ac_session(MONDAY.replace(hour=15), kw=10.0, soc0=30.0, limit=63.3, usable=60.0,
                                 idle_after_min=600))
    s = charging_marts(readings, config)["charging_sessions"].row(0, named=True)
    expected = s["peak_energy_kwh"] * 0.5 + s["off_peak_energy_kwh"] * 0.2 + 1.0
    assert s["cost"] == pytest.approx(expected) and s["currency"] == "EUR"
    assert s["peak_energy_kwh"] + s["off_peak_energy_kwh"] == pytest.approx(s["grid_energy_kwh"])


def test_peak_windows_are_validated():
    assert parse_windows(["22:00-06:00", "07:15-09:00"]) == [(1320, 360), (435, 540)]
    for bad in ("16-21", "16:00-16:00", "16:10-21:00", "25:00-26:00"):
        with pytest.raises(ValueError):
            parse_windows([bad])


def test_load_profile_average_power_per_day_type_and_hour():
    # 7 kW at home from 00:00 to 02:00 on Monday and on Tuesday, over a Monday-Sunday week
    sessions = pl.DataFrame({
        "session_id": ["a", "b"], "vehicle_id": ["v1", "v2"], "location_type": ["home", "home"],
        "grid_energy_kwh": [14.0, 14.0],
        "charge_start_estimated_at": [MONDAY, MONDAY + timedelta(days=1)],
        "charge_end_estimated_at": [MONDAY + timedelta(hours=2), MONDAY + timedelta(days=1, hours=2)],
    })
    profile = load_profile(sessions, "UTC", date(2026, 9, 7), date(2026, 9, 13))
    assert profile.height == 2 * 24 * 4
    home = profile.filter((pl.col("location_type") == "home") & (pl.col("day_type") == "weekday"))
    midnight = home.filter(pl.col("hour") == 0).row(0, named=True)
    assert (midnight["sessions"], midnight["days"]) == (2, 5)
    assert midnight["energy_kwh"] == pytest.approx(14.0)
    assert midnight["avg_power_kw"] == pytest.approx(14.0 / 5)  # 2 × 7 kWh in that hour over 5 weekdays
    assert home.filter(pl.col("hour") == 2)["energy_kwh"][0] == 0.0


def test_battery_health_estimates_capacity_from_large_sessions():
    deliveries = ac_session(MONDAY.replace(hour=18), usable=54.0, soc0=20.0, limit=90.0)  # 70 points
    deliveries += ac_session(MONDAY.replace(hour=23) + timedelta(days=1), usable=54.0, soc0=70.0, limit=80.0,
                             odo=1050.0)  # 10 points: too small to estimate
    deliveries.append(snap(MONDAY, nominal=60.0))
    health = charging_marts(frame(*deliveries), ChargingConfig())["battery_health"].row(0, named=True)
    assert health["month"] == date(2026, 9, 1)
    assert health["estimated_capacity_kwh"] == pytest.approx(54.0, rel=0.01)
    assert health["state_of_health_pct"] == pytest.approx(90.0, rel=0.01)
    assert (health["sessions_used"], health["sessions"]) == (1, 2)


def test_battery_health_is_not_biased_by_a_limit_reached_between_sparse_readings():
    from fleets import steady_charging_fleet

    health = charging_marts(steady_charging_fleet(vehicles=60), ChargingConfig())["battery_health"]
    assert health.height == 60 and health["estimated_capacity_kwh"].null_count() == 0
    # true state of health is 100 %: within 5 % of the usable capacity, no month above 105 %
    assert (health["estimated_capacity_kwh"] / 60.0 - 1).abs().max() <= 0.05
    assert health["state_of_health_pct"].max() <= 105.0
    assert health["health_flag"].null_count() == health.height


def test_an_implausible_state_of_health_is_flagged_not_fatal():
    deliveries = ac_session(MONDAY.replace(hour=18), usable=54.0, soc0=20.0, limit=90.0)
    deliveries.append(snap(MONDAY, nominal=40.0))  # a wrong nominal capacity: 135 %
    health = charging_marts(frame(*deliveries), ChargingConfig())["battery_health"].row(0, named=True)
    assert health["state_of_health_pct"] == pytest.approx(135.0, rel=0.01)
    assert health["health_flag"] == "implausible"


def test_soc_times_nominal_capacity_states_its_range():
    deliveries = ac_session(MONDAY.replace(hour=18), counter=False, power=False, usable=54.0)
    deliveries.append(snap(MONDAY.replace(hour=17), nominal=60.0))
    s = charging_sessions(frame(*deliveries)).row(0, named=True)
    assert s["energy_source"] == "soc_x_nominal_capacity"
    # 50 points ± 1 of 60 kWh, of which 80-100 % is usable; the truth (27 kWh) lies inside
    assert s["energy_low_kwh"] == pytest.approx(0.49 * 60 * 0.8)
    assert s["energy_high_kwh"] == pytest.approx(0.51 * 60 * 1.0)
    assert s["energy_low_kwh"] <= 0.5 * 54.0 <= s["energy_high_kwh"]


def test_a_car_without_energy_or_power_uses_the_usable_ratio_its_model_measured():
    deliveries = ac_session(MONDAY.replace(hour=18), vehicle="measured", usable=54.0, soc0=20.0, limit=90.0)
    deliveries += ac_session(MONDAY.replace(hour=18), vehicle="silent", usable=54.0, counter=False, power=False)
    deliveries += [snap(MONDAY, vehicle=v, nominal=60.0) for v in ("measured", "silent")]
    vehicles = pl.DataFrame({"vehicle_id": ["measured", "silent"], "make": ["NISSAN"] * 2, "model": ["Leaf"] * 2})
    s = charging_sessions(frame(*deliveries), vehicles).filter(pl.col("vehicle_id") == "silent").row(0, named=True)
    assert s["energy_source"] == "soc_x_model_ratio"
    assert s["energy_added_kwh"] == pytest.approx(0.5 * 54.0, rel=0.05)  # not 0.5 × 60
    assert s["energy_low_kwh"] <= 0.5 * 54.0 <= s["energy_high_kwh"]
    # without the model, the nominal capacity it is
    alone = charging_sessions(frame(*deliveries)).filter(pl.col("vehicle_id") == "silent")
    assert alone["energy_source"].to_list() == ["soc_x_nominal_capacity"]


def test_no_readings_give_empty_marts():
    marts = charging_marts(frame(), ChargingConfig())
    assert marts["charging_sessions"].is_empty() and marts["battery_health"].is_empty()
    assert marts["charging_load_profile"]["energy_kwh"].sum() == 0


# -- against the simulator's ground truth ---------------------------------------------------

def matched_sessions(found: pl.DataFrame, true: pl.DataFrame) -> pl.DataFrame:
    """A found session matches a true one of the same vehicle when their charging intervals
    overlap (found: first to last charging reading; true: charge start to end); each
    session matches at most once, earliest first."""
    pairs = (found.with_row_index("found").join(true.with_row_index("true"), on="vehicle_id", suffix="_true")
             .filter((pl.col("started_at") <= pl.col("charge_ended_at"))
                     & (pl.col("ended_at") >= pl.col("charge_started_at")))
             .sort("true", "found"))
    return pairs.unique("true", keep="first", maintain_order=True).unique("found", keep="first", maintain_order=True)


def test_charging_marts_against_ground_truth(default_fleet):
    found = mart(default_fleet, "charging_sessions").with_columns(pl.col(pl.Datetime).dt.convert_time_zone("UTC"))
    window = json.loads((default_fleet / "ground_truth" / "summary.json").read_text())["window"]
    window_end = datetime.fromisoformat(window["end"])
    # a charge that starts after the simulated window cannot be seen in its data
    true = truth(default_fleet, "charging_sessions").filter(pl.col("charge_started_at") < window_end)
    pairs = matched_sessions(found, true)
    recall, precision = pairs.height / true.height, pairs.height / found.height
    assert recall >= 0.95 and precision >= 0.95, (recall, precision)

    vehicles = truth(default_fleet, "vehicles").select("vehicle_id", "usable_capacity_kwh", "nominal_capacity_kwh")
    done = pairs.filter(pl.col("charge_ended_at") < window_end).join(vehicles, on="vehicle_id")
    error = (pl.col("energy_added_kwh") / pl.col("energy_added_kwh_true") - 1).abs()
    measured = done.filter(pl.col("energy_source") != "soc_x_nominal_capacity")
    assert measured.select((error <= 0.05).mean()).item() >= 0.95
    # without an energy counter or power signal the usable capacity is unknowable: energy is
    # the SoC gain times the nominal capacity, off from the truth by exactly nominal/usable
    nominal = done.filter(pl.col("energy_source") == "soc_x_nominal_capacity")
    soc_error = (pl.col("energy_added_kwh") / pl.col("energy_added_kwh_true")
                 / (pl.col("nominal_capacity_kwh") / pl.col("usable_capacity_kwh")) - 1).abs()
    assert nominal.select((soc_error <= 0.05).mean()).item() >= 0.95
    # and the truth lies inside the stated range for at least 95 % of them
    inside = pl.col("energy_added_kwh_true").is_between(pl.col("energy_low_kwh"), pl.col("energy_high_kwh"))
    print(f"\nsoc_x_nominal sessions: {nominal.height}, truth inside range: {nominal.select(inside.mean()).item():.3f}")
    assert nominal.height > 0 and nominal.select(inside.mean()).item() >= 0.95
    assert done.select((pl.col("is_dc_fast") == pl.col("is_dc_fast_true")).mean()).item() >= 0.98
    assert done.select((pl.col("location_type") == pl.col("location_type_true")).mean()).item() >= 0.95

    health = mart(default_fleet, "battery_health").filter(pl.col("estimated_capacity_kwh").is_not_null())
    health = health.join(vehicles, on="vehicle_id")
    assert health.height >= 20
    capacity_error = (health["estimated_capacity_kwh"] / health["usable_capacity_kwh"] - 1).abs()
    print(f"battery health: {health.height} months, capacity error max {capacity_error.max():.4f}, "
          f"median {capacity_error.median():.4f}, SoH max {health['state_of_health_pct'].max():.2f}")
    assert capacity_error.max() <= 0.05
    # no month above 105 % on a fleet whose true state of health is at most 100 %
    assert health["state_of_health_pct"].max() <= 105.0

    profile = mart(default_fleet, "charging_load_profile")
    assert profile["energy_kwh"].sum() == pytest.approx(found["grid_energy_kwh"].sum(), rel=1e-6)
    daily = mart(default_fleet, "charging_daily_energy")
    assert daily["energy_kwh"].sum() == pytest.approx(found["grid_energy_kwh"].sum(), rel=1e-6)


def test_deliveries_to_charging_marts_through_dagster_with_run_config(data_dir):
    """Real payload shapes in landing, a build as `fleetlake run` does it, then the charging
    step again with a tariff and time zone from run config."""
    import dagster as dg
    from conftest import build
    from deliveries import delivery, odometer, signal as sig, write_landing

    from assets.marts.charging.assets import charging
    from storage.resources import LakeResource, WarehouseResource

    def state(n: int, at: datetime, charging_now: bool, plugged: bool, soc: float, kwh: float) -> dict:
        iso = at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return delivery(f"e{n}", "ev-1", [
            odometer(1000.0, iso),
            sig("tractionbattery-stateofcharge", {"value": soc, "unit": "percent"}, iso),
            sig("charge-ischarging", {"value": charging_now}, iso),
            sig("charge-ischargingcableconnected", {"value": plugged}, iso),
            sig("charge-energyadded", {"value": kwh, "unit": "kWh"}, iso),
            sig("charge-wattage", {"value": 7000 if charging_now else 0, "unit": "W"}, iso),
            sig("location-preciselocation", {"latitude": HOME[0], "longitude": HOME[1], "heading": 0}, iso),
        ], delivered_at=int(at.timestamp() * 1000) + 5_000)

    start = MONDAY.replace(hour=20)  # 7 kW for three hours from 20:00, 30 % → 65 % of 60 kWh
    lines = [state(0, start - timedelta(minutes=30), False, True, 30.0, 0.0)]
    lines += [state(i + 1, start + timedelta(minutes=30 * i), True, True, 30.0 + 7 * i / 2 / 60 * 100, 3.5 * i)
              for i in range(7)]
    lines += [state(9, start + timedelta(hours=3, minutes=1), False, True, 65.0, 21.0),
              state(10, start + timedelta(hours=8), False, False, 65.0, 21.0)]
    write_landing(data_dir / "landing" / "2026/09/07/a.ndjson", lines)
    assert build(data_dir).ok
    s = mart(data_dir, "charging_sessions").row(0, named=True)
    assert s["energy_added_kwh"] == pytest.approx(21.0) and s["avg_power_kw"] == pytest.approx(7.0)
    assert s["location_type"] == "home" and s["idle_min"] > 0
    # at home by default: 20:00-21:00 UTC at the peak price, 21:00-23:00 off-peak, 90 % efficient
    assert s["cost"] == pytest.approx(7.0 / 0.9 * 0.40 + 14.0 / 0.9 * 0.25)

    resources = {"lake": LakeResource(data_dir=str(data_dir)), "warehouse": WarehouseResource(data_dir=str(data_dir))}
    config = {"timezone": "America/Los_Angeles", "currency": "USD", "ac_efficiency": 1.0,
              "home": {"peak_per_kwh": 0.5, "off_peak_per_kwh": 0.2, "session_fee": 1.0}}
    result = dg.materialize([charging], resources=resources, run_config={"ops": {"charging": {"config": config}}})
    assert result.success
    s = mart(data_dir, "charging_sessions").row(0, named=True)
    # plugged in 19:30-04:00 UTC is 12:30-21:00 in Los Angeles: not overnight; charging 13:00-16:00, off-peak
    assert (s["location_type"], s["currency"]) == ("public", "USD")
    assert s["peak_energy_kwh"] == pytest.approx(0.0, abs=1e-9)


def _match_truth(sessions: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """Each found session beside the true session whose plug-in it lies in."""
    renamed = truth.sort("plugged_at").rename({c: "true_" + c for c in ("current_type", "charge_limit_pct",
                                                                          "completion", "unplugged_at")})
    matched = sessions.sort("started_at").join_asof(renamed, left_on="started_at", right_on="plugged_at",
                                                    by="vehicle_id", strategy="backward", check_sortedness=False)
    return matched.filter(pl.col("started_at") <= pl.col("true_unplugged_at"))


def test_current_type_is_the_cars_own_where_it_says_and_from_power_otherwise():
    from fleets import charger_reports_fleet

    readings, truth = charger_reports_fleet()
    sessions = charging_marts(readings, ChargingConfig())["charging_sessions"]
    m = _match_truth(sessions, truth)
    assert m.height == truth.filter(pl.col("charging_readings") > 0).height  # every visible session, once
    said = m.filter(pl.col("reporting") != "power_only")
    assert said.height > 200
    assert (said["current_type"] == said["true_current_type"]).all()
    assert (said["current_type_source"] == said["reporting"].replace(
        {"status": "charging_status", "fast_charger": "fast_charger_signal"})).all()
    # weak DC chargers (15-21 kW) are DC to the car and AC to the power rule: the car's word wins
    slow_dc = said.filter((pl.col("true_current_type") == "DC") & ~pl.col("is_dc_fast"))
    assert slow_dc.height >= 10 and (slow_dc["current_type"] == "DC").all()
    # where the car says nothing, power decides, as DC fast does
    by_power = m.filter(pl.col("reporting") == "power_only")
    assert (by_power["current_type_source"] == "power").all()
    assert by_power["current_type"].to_list() == ["DC" if fast else "AC" for fast in by_power["is_dc_fast"]]
    # the grid energy uses the efficiency of the current the car reported
    dc = said.filter(pl.col("current_type") == "DC")
    assert (dc["grid_energy_kwh"] - dc["energy_added_kwh"] / ChargingConfig().dc_efficiency).abs().max() < 1e-9


def test_a_session_that_stopped_at_its_limit_is_complete_and_one_below_it_interrupted():
    from fleets import charger_reports_fleet

    readings, truth = charger_reports_fleet()
    m = _match_truth(charging_sessions(readings), truth)
    # the limit in force is the one the car reported; none where the car reports none
    assert (m["charge_limit_pct"].is_null() == m["true_charge_limit_pct"].is_null()).all()
    known = m.filter(pl.col("true_charge_limit_pct").is_not_null())
    assert (known["charge_limit_pct"] == known["true_charge_limit_pct"]).all()
    # never contradicts the truth; says nothing only where no reading shows where the charge stopped
    said = m.filter(pl.col("completion").is_not_null())
    assert (said["completion"] == said["true_completion"]).all()
    assert (known.filter(pl.col("true_completion") == "complete")["completion"] == "complete").all()
    interrupted = known.filter(pl.col("true_completion") == "interrupted")
    assert interrupted.height >= 60
    assert (interrupted["completion"] == "interrupted").mean() >= 0.7
    # without a limit: FULLY_CHARGED from the car says complete; nothing else says anything
    no_limit = m.filter(pl.col("true_charge_limit_pct").is_null())
    full = no_limit.filter((pl.col("reporting") == "status") & (pl.col("true_completion") == "complete"))
    assert full.height > 0 and (full["completion"] == "complete").all()
    assert no_limit.filter(pl.col("reporting") != "status")["completion"].null_count() == \
        no_limit.filter(pl.col("reporting") != "status").height


def test_car_words_that_name_no_current_type_fall_back_to_power_and_a_limit_holds_until_changed():
    deliveries = ac_session(MONDAY.replace(hour=18), soc0=30.0, limit=80.0, kw=7.0)
    status = [{"vehicle_id": "v1", "reading_time": MONDAY.replace(hour=18, minute=20), "metric": "charging_status",
               "component": word, "value": None} for word in ("CHARGING", "CHARGE_IN_PROGRESS")]
    limit = [{"vehicle_id": "v1", "reading_time": MONDAY - timedelta(days=3), "metric": "charge_limit_pct",
              "component": None, "value": 80.0}]
    s = charging_sessions(frame(*deliveries, status, limit)).row(0, named=True)
    assert (s["current_type"], s["current_type_source"]) == ("AC", "power")
    assert (s["charge_limit_pct"], s["completion"]) == (80.0, "complete")
    # the same charge, the car saying DC in a word of its own, and a limit raised before it
    status = [dict(status[0], component="DC_CHARGING")]
    limit.append(dict(limit[0], reading_time=MONDAY.replace(hour=17), value=90.0))
    s = charging_sessions(frame(*deliveries, status, limit)).row(0, named=True)
    assert (s["current_type"], s["current_type_source"]) == ("DC", "charging_status")
    assert s["charge_limit_pct"] == 90.0
    assert s["completion"] == "interrupted"  # it stopped at 80 %, below its 90 % limit, as the next reading shows


def test_range_at_full_charge_is_a_second_view_of_battery_health():
    # A car whose range at full charge is 400 km in September and 376 km in October (6 % down),
    # reported with the SoC of the same delivery every 3 hours, the estimate scattered ±4 % by
    # temperature and driving; readings below 20 % SoC (and their rounding) are left out.
    import numpy as np

    rng = np.random.default_rng(3)
    rows = []
    for month, full_km in ((9, 400.0), (10, 376.0)):
        for k in range(200):
            t = datetime(2026, month, 1, tzinfo=UTC) + timedelta(hours=3 * k)
            soc = float(rng.uniform(5, 95))
            rows += [{"vehicle_id": "v1", "reading_time": t, "metric": "soc_pct", "component": None, "value": soc},
                     {"vehicle_id": "v1", "reading_time": t, "metric": "range_km", "component": None,
                      "value": round(full_km * soc / 100 * float(rng.uniform(0.96, 1.04)))}]
    sessions = [d for month in (9, 10) for d in ac_session(datetime(2026, month, 20, 18, tzinfo=UTC), soc0=30.0,
                                                             limit=80.0, usable=60.0, odo=1000.0 + month)]
    health = charging_marts(frame(*sessions, rows), ChargingConfig())["battery_health"].sort("month")
    assert health["month"].to_list() == [date(2026, 9, 1), date(2026, 10, 1)]
    sep, oct_ = health.row(0, named=True), health.row(1, named=True)
    assert sep["range_at_full_km"] == pytest.approx(400.0, rel=0.02)
    assert oct_["range_at_full_km"] == pytest.approx(376.0, rel=0.02)
    assert sep["range_index_pct"] == 100.0
    assert oct_["range_index_pct"] == pytest.approx(94.0, abs=2.0)
    assert 100 < sep["range_readings"] < 200  # only readings at or above 20 % SoC
    # a car that reports no range has no range view, and its capacity estimate is unchanged
    no_range = [r for r in rows if r["metric"] != "range_km"]
    without = charging_marts(frame(*sessions, no_range), ChargingConfig())["battery_health"].sort("month")
    assert without["range_at_full_km"].null_count() == 2 and without["range_readings"].to_list() == [0, 0]
    assert without["estimated_capacity_kwh"].to_list() == health["estimated_capacity_kwh"].to_list()


def test_charging_facts_of_vehicles_read_apart_give_the_marts_of_all_read_together():
    """A build reads the readings in batches of vehicles, each reduced to its charging facts:
    the marts of the facts put together are those of all readings at once, and the usable
    ratio one car of a model measured still reaches the car of that model read apart."""
    from assets.marts.charging.assets import ChargingFacts, vehicle_charging_marts
    from assets.marts.charging.sessions import charging_readings

    deliveries = ac_session(MONDAY.replace(hour=18), vehicle="measured", usable=54.0, soc0=20.0, limit=90.0)
    deliveries += ac_session(MONDAY.replace(hour=18), vehicle="silent", usable=54.0, counter=False, power=False)
    deliveries += ac_session(MONDAY.replace(hour=20), vehicle="other", usable=40.0, soc0=30.0)
    deliveries += [snap(MONDAY, vehicle=v, nominal=60.0) for v in ("measured", "silent", "other")]
    vehicles = pl.DataFrame({"vehicle_id": ["measured", "silent", "other"], "make": ["NISSAN", "NISSAN", "KIA"],
                             "model": ["Leaf", "Leaf", "EV6"]})
    distinct = charging_readings(frame(*deliveries))
    apart = ChargingFacts.concat([ChargingFacts.of(distinct.filter(pl.col("vehicle_id") == v))
                                  for v in ("silent", "other", "measured")])
    together = vehicle_charging_marts(ChargingFacts.of(distinct), ChargingConfig(), vehicles)
    batched = vehicle_charging_marts(apart, ChargingConfig(), vehicles)
    for name, key in (("charging_sessions", "session_id"), ("battery_health", ["vehicle_id", "month"])):
        assert batched[name].height == together[name].height > 0
        assert batched[name].sort(key).equals(together[name].sort(key)), name
    silent = batched["charging_sessions"].filter(pl.col("vehicle_id") == "silent")
    assert silent["energy_source"].to_list() == ["soc_x_model_ratio"]
