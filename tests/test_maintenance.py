"""Maintenance forecast: each rule on hand-made series, then the default fleet against the
simulator's ground truth."""

import json
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from conftest import mart, truth

from assets.marts.maintenance.assets import load_maintenance_readings
from assets.marts.maintenance.config import MaintenanceConfig
from assets.marts.maintenance.forecast import distinct_readings, forecast_maintenance, km_per_day
from assets.marts.maintenance.rules import (
    MICROS_PER_DAY, TIRE_COMPONENTS, active_trouble_codes, forecast_diagnostics, forecast_low_voltage, forecast_oil,
    forecast_tire, urgency,
)
from assets.marts.trends import segment_starts, theil_sen
from pipelines.reports.maintenance import needing_attention
from pipelines import cli
from storage.resources import LakeResource

T0 = datetime(2026, 9, 1, tzinfo=UTC)
CONFIG = MaintenanceConfig()
READING_SCHEMA = {"event_id": pl.String, "vehicle_id": pl.String, "reading_time": pl.Datetime("us", "UTC"),
                  "metric": pl.String, "component": pl.String, "value": pl.Float64,
                  "noted_at": pl.Datetime("us", "UTC"), "delivered_at": pl.Datetime("us", "UTC")}


def readings(values, metric, component=None, every_hours=4.0, start=T0, vehicle="v1", noted_at=None) -> pl.DataFrame:
    times = [start + timedelta(hours=every_hours * k) for k in range(len(values))]
    return pl.DataFrame(
        [{"event_id": f"{vehicle}-{metric}-{component}-{k}", "vehicle_id": vehicle, "reading_time": t,
          "metric": metric, "component": component, "value": v, "noted_at": noted_at,
          "delivered_at": t + timedelta(seconds=30)} for k, (t, v) in enumerate(zip(times, values))],
        schema=READING_SCHEMA)


def series(values, metric="tire_pressure_kpa", component="front_left", **kwargs) -> pl.DataFrame:
    return distinct_readings(readings(values, metric, component, **kwargs))


def day_of(moment: datetime) -> float:
    return moment.timestamp() * 1e6 / MICROS_PER_DAY


def last_day(frame: pl.DataFrame) -> float:
    return float(frame["day"][-1])


def noise(n: int, seed: int = 1, width: float = 1.5) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-width, width, n)


# --- trend fitting -------------------------------------------------------------------------

def test_theil_sen_is_not_moved_by_a_few_wild_readings():
    x = np.arange(30, dtype=float)
    y = 2.0 * x + 1.0
    y[[3, 17, 25]] = [500.0, -400.0, 900.0]
    fit = theil_sen(x, y, 29.0)
    assert fit.slope == pytest.approx(2.0)
    assert fit.level == pytest.approx(59.0)
    assert fit.readings == 30


def test_a_new_segment_starts_at_a_jump_back_up_and_not_at_noise():
    falling = 240.0 - 0.5 * np.arange(40) + noise(40)
    assert segment_starts(falling, jump=10.0) == [0]
    refilled = np.concatenate([falling, 240.0 + noise(10, seed=2)])
    assert segment_starts(refilled, jump=10.0) == [0, 40]


# --- engine oil ----------------------------------------------------------------------------

def oil_frame(oil: np.ndarray, odometer: np.ndarray, every_hours: float = 4.0) -> pl.DataFrame:
    return series(list(oil), metric="oil_life_pct", component=None, every_hours=every_hours) \
        .with_columns(odometer_km=pl.Series(odometer.astype(float)))


def test_oil_due_date_and_odometer_follow_the_trend_against_distance():
    # 0.01 % per km; 50 km a day, read every 4 hours for 14 days.
    n = 14 * 6
    odometer = 20_000.0 + np.arange(n) * 50.0 / 6
    oil = np.round(60.0 - (odometer - 20_000.0) * 0.01, 1)
    frame = oil_frame(oil, odometer)
    row = forecast_oil("v1", frame, km_per_day=50.0, as_of_day=last_day(frame), config=CONFIG)
    assert row["trend_per_day"] == pytest.approx(-0.5, rel=0.01)
    remaining = oil[-1] - 15.0
    assert row["days_until_due"] == pytest.approx(remaining / 0.5, abs=0.3)
    assert row["predicted_due_odometer_km"] == pytest.approx(odometer[-1] + remaining / 0.01, abs=10)
    assert row["urgency"] == "OK" and row["current_value"] == oil[-1]
    assert row["evidence_readings"] == n


def test_an_oil_change_starts_a_new_trend():
    odometer = 10_000.0 + np.arange(90) * 10.0
    before = 40.0 - (odometer[:60] - odometer[0]) * 0.02
    after = 100.0 - (odometer[60:] - odometer[60]) * 0.005  # the new oil lasts longer
    frame = oil_frame(np.round(np.concatenate([before, after]), 2), odometer)
    row = forecast_oil("v1", frame, km_per_day=60.0, as_of_day=last_day(frame), config=CONFIG)
    assert row["detail"] == "since an oil change"
    assert row["trend_since"] == T0 + timedelta(hours=4 * 60)
    assert row["trend_per_day"] == pytest.approx(-0.005 * 60.0, rel=0.02)
    assert row["evidence_readings"] == 30


def test_past_due_oil_is_dated_when_it_crossed_the_due_value():
    odometer = 5_000.0 + np.arange(30) * 20.0
    oil = 20.0 - np.arange(30) * 0.4  # 15.2 at reading 12, 14.8 at reading 13
    frame = oil_frame(oil, odometer)
    row = forecast_oil("v1", frame, km_per_day=120.0, as_of_day=last_day(frame), config=CONFIG)
    assert row["urgency"] == "PAST_DUE"
    assert row["predicted_due_at"] == T0 + timedelta(hours=4 * 12.5)


def test_oil_that_does_not_fall_has_no_due_date():
    frame = oil_frame(np.full(30, 70.0), np.full(30, 1_000.0))
    row = forecast_oil("v1", frame, km_per_day=0.0, as_of_day=last_day(frame), config=CONFIG)
    assert row["predicted_due_date"] is None and row["urgency"] == "OK"
    assert row["trend_per_day"] == 0.0


# --- tyres ---------------------------------------------------------------------------------

def test_a_healthy_noisy_tyre_is_not_flagged():
    days = np.arange(30 * 6) / 6
    frame = series(list(240.0 - 0.1 * days + noise(len(days))))
    row = forecast_tire("v1", "tire_front_left", frame, None, last_day(frame), CONFIG)
    assert row["baseline_value"] == pytest.approx(239.65, abs=1.0)  # median of the first 7 days
    assert row["threshold_value"] == pytest.approx(0.75 * row["baseline_value"], abs=0.01)
    assert -0.3 < row["trend_per_day"] < 0.0
    assert row["urgency"] == "OK" and row["finding"] is None
    assert row["days_until_due"] > 200


def test_a_leaking_tyre_is_found_and_dated():
    days = np.arange(16 * 6) / 6
    pressure = 240.0 - 3.0 * np.clip(days - 10.0, 0, None)  # leaks 3 kPa a day from day 10
    frame = series(list(pressure + noise(len(days))))
    row = forecast_tire("v1", "tire_front_left", frame, None, last_day(frame), CONFIG)
    assert row["finding"] == "LEAKING"
    assert row["trend_per_day"] == pytest.approx(-3.0, abs=0.5)
    expected_days = (pressure[-1] - 180.0) / 3.0
    assert row["days_until_due"] == pytest.approx(expected_days, abs=3)
    assert row["urgency"] in ("URGENT", "SOON")


def test_a_re_inflated_tyre_keeps_its_leak_rate_until_the_new_segment_shows_its_own():
    days = np.arange(20 * 6) / 6
    leaking = 240.0 - 3.0 * np.clip(days - 10.0, 0, None)
    refilled = np.concatenate([leaking, [240.0, 239.6]])
    frame = series(list(refilled + noise(len(refilled))))
    row = forecast_tire("v1", "tire_front_left", frame, None, last_day(frame), CONFIG)
    assert row["current_value"] == pytest.approx(240.0, abs=2.0)
    assert row["finding"] == "LEAKING" and row["detail"] == "loss rate from before the latest re-inflation"
    # A week later the new segment stands on its own: held air, no leak.
    held = np.concatenate([leaking, 240.0 + noise(7 * 6, seed=3)])
    frame = series(list(held))
    row = forecast_tire("v1", "tire_front_left", frame, None, last_day(frame), CONFIG)
    assert row["finding"] is None and row["urgency"] == "OK" and row["detail"] == "since a re-inflation"
    assert row["trend_since"] == T0 + timedelta(hours=4 * len(leaking))


def test_a_placard_pressure_replaces_the_measured_baseline():
    frame = series(list(240.0 + noise(60)))
    row = forecast_tire("v1", "tire_front_left", frame, 330.0, last_day(frame), CONFIG)
    assert row["baseline_value"] == 330.0 and row["threshold_value"] == 247.5
    assert row["urgency"] == "PAST_DUE" and row["detail"] == "baseline from the placard"


def test_a_tyre_that_stopped_reporting_is_unknown_unless_its_leak_was_seen():
    days = np.arange(20 * 6) / 6
    healthy = series(list(240.0 + noise(len(days))))
    row = forecast_tire("v1", "tire_front_left", healthy, None, last_day(healthy) + 10, CONFIG)
    assert row["urgency"] == "UNKNOWN" and row["detail"] == "no reading since 2026-09-20"
    leaking = series(list(240.0 - 2.0 * np.clip(days - 14.0, 0, None) + noise(len(days))))
    row = forecast_tire("v1", "tire_front_left", leaking, None, last_day(leaking) + 10, CONFIG)
    assert row["finding"] == "LEAKING" and row["urgency"] == "SOON"


# --- 12 V battery --------------------------------------------------------------------------

def test_a_healthy_12v_battery_holds_and_has_no_due_date():
    days = np.arange(20 * 6) / 6
    frame = series(list(85.0 + 1.5 * np.sin(2 * np.pi * days) + noise(len(days))),
                   metric="lv_battery_soc_pct", component=None)
    row = forecast_low_voltage("v1", frame, last_day(frame), CONFIG)
    assert row["urgency"] == "OK" and row["finding"] is None and row["predicted_due_date"] is None
    assert row["current_value"] == pytest.approx(85.0, abs=1.5)


def test_a_falling_12v_battery_is_flagged_and_dated():
    days = np.arange(20 * 6) / 6
    frame = series(list(80.0 - 1.0 * days + noise(len(days))), metric="lv_battery_soc_pct", component=None)
    row = forecast_low_voltage("v1", frame, last_day(frame), CONFIG)
    assert row["finding"] == "FALLING" and row["trend_per_day"] == pytest.approx(-1.0, abs=0.1)
    assert row["days_until_due"] == pytest.approx((80.0 - 1.0 * days[-1] - 50.0) / 1.0, abs=1.5)
    assert row["urgency"] == "SOON"
    weak = series(list(45.0 + noise(60)), metric="lv_battery_soc_pct", component=None)
    assert forecast_low_voltage("v1", weak, last_day(weak), CONFIG)["urgency"] == "PAST_DUE"


# --- diagnostics ---------------------------------------------------------------------------

def trouble_lists(lists: list[list[str]], first_seen: dict[str, datetime]) -> tuple[pl.DataFrame, pl.DataFrame]:
    counts = series([float(len(c)) for c in lists], metric="dtc_count", component=None)
    codes = pl.concat([readings([None], "dtc_code", code, start=T0 + timedelta(hours=4 * k), noted_at=first_seen[code])
                       for k, listed in enumerate(lists) for code in listed] or [readings([], "dtc_code")])
    return counts, codes.rename({"component": "code"})


def test_active_codes_are_those_of_the_latest_list_with_their_own_first_seen_time():
    seen = {"P0420": T0 - timedelta(days=3), "B1000": T0}
    counts, codes = trouble_lists([["P0420", "B1000"], ["P0420", "B1000"], ["P0420"]], seen)
    active = active_trouble_codes(counts, codes)
    assert active.select("code", "system", "severity", "first_seen_at", "reports").rows() == \
        [("P0420", "powertrain", "HIGH", seen["P0420"], 3)]
    row = forecast_diagnostics("v1", counts["day"].to_numpy(), active, last_day(counts), CONFIG)
    assert row["urgency"] == "URGENT" and row["finding"] == "ACTIVE_CODES" and row["current_value"] == 1
    assert row["predicted_due_at"] == seen["P0420"]
    assert "P0420 (powertrain, HIGH" in row["detail"]


def test_diagnostics_urgency_follows_the_code_system():
    for code, expected in [("C0035", "URGENT"), ("U0100", "SOON"), ("B1000", "SOON")]:
        counts, codes = trouble_lists([[code]], {code: T0})
        active = active_trouble_codes(counts, codes)
        row = forecast_diagnostics("v1", counts["day"].to_numpy(), active, last_day(counts), CONFIG)
        assert row["urgency"] == expected, code
    counts, codes = trouble_lists([["U0100"], []], {"U0100": T0})
    active = active_trouble_codes(counts, codes)
    cleared = forecast_diagnostics("v1", counts["day"].to_numpy(), active, last_day(counts), CONFIG)
    assert cleared["urgency"] == "OK" and cleared["current_value"] == 0
    none = forecast_diagnostics("v1", np.array([]), active_trouble_codes(counts, codes).clear(), 0.0, CONFIG)
    assert none["urgency"] == "UNKNOWN"


# --- urgency, as-of, the fleet -------------------------------------------------------------

def test_urgency_thresholds_are_configurable():
    assert [urgency(d, CONFIG) for d in (-1, 0, 5, 20, 60, None)] == \
        ["PAST_DUE", "PAST_DUE", "URGENT", "SOON", "OK", "OK"]
    strict = MaintenanceConfig(urgent_within_days=3, soon_within_days=90)
    assert [urgency(d, strict) for d in (5, 60)] == ["SOON", "SOON"]


def fleet_readings() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Two vehicles: v1 with a leaking tyre, v2 healthy and with its latest reading later."""
    days = np.arange(14 * 6) / 6
    frames = []
    for vehicle, leak in [("v1", 3.0), ("v2", 0.0)]:
        for position in TIRE_COMPONENTS:
            loss = leak * np.clip(days - 8.0, 0, None) if position == "rear_left" else 0.1 * days
            pressure = list(235.0 - loss + noise(len(days)))
            frames.append(readings(pressure, "tire_pressure_kpa", position, vehicle=vehicle))
        frames.append(readings(list(88.0 + noise(len(days))), "lv_battery_soc_pct", vehicle=vehicle))
        frames.append(readings([0.0] * len(days), "dtc_count", vehicle=vehicle))
    latest = {"v1": T0 + timedelta(hours=4 * (len(days) - 1)), "v2": T0 + timedelta(days=20)}
    as_of = pl.DataFrame({"vehicle_id": list(latest), "as_of": list(latest.values())},
                         schema={"vehicle_id": pl.String, "as_of": pl.Datetime("us", "UTC")})
    return pl.concat(frames), as_of


NO_DISTANCE = pl.DataFrame(schema={"vehicle_id": pl.String, "day": pl.Date, "distance_km": pl.Float64})
VEHICLES = pl.DataFrame({"vehicle_id": ["v1", "v2"], "model": ["Golf", "Model 3"], "powertrain": ["ICE", "BEV"]})


def test_the_fleet_forecast_is_as_of_each_vehicles_latest_reading_and_repeatable():
    fleet, as_of = fleet_readings()
    forecast = forecast_maintenance(fleet, as_of, NO_DISTANCE, VEHICLES, CONFIG)
    assert forecast.group_by("vehicle_id").len().sort("vehicle_id").rows() == [("v1", 7), ("v2", 6)]
    # v1 is an ICE car that sent no oil life: its oil is UNKNOWN, not silently absent.
    assert forecast.filter(component="engine_oil").select("vehicle_id", "urgency").rows() == [("v1", "UNKNOWN")]
    assert dict(forecast.select("vehicle_id", "as_of").unique().iter_rows()) == dict(as_of.iter_rows())
    leak = forecast.filter(vehicle_id="v1", component="tire_rear_left").row(0, named=True)
    assert leak["finding"] == "LEAKING"
    assert leak["days_until_due"] == pytest.approx(
        (leak["predicted_due_at"] - leak["as_of"]).total_seconds() / 86400, abs=1e-6)
    assert forecast.filter(pl.col("vehicle_id") == "v2", pl.col("finding").is_null()).height == 6
    # Re-sent readings (same reading time, later delivery) count once; the result is the same.
    resent = fleet.with_columns(pl.col("delivered_at") + timedelta(days=2))
    again = forecast_maintenance(pl.concat([fleet, resent]), as_of, NO_DISTANCE, VEHICLES, CONFIG)
    assert again.equals(forecast)


def test_placard_pressures_are_looked_up_by_vehicle_then_by_model():
    fleet, as_of = fleet_readings()
    config = MaintenanceConfig(tire_placard_kpa={"Model 3": 290.0, "v1": 240.0})
    forecast = forecast_maintenance(fleet, as_of, NO_DISTANCE, VEHICLES, config).filter(
        pl.col("component").str.starts_with("tire"))
    assert dict(forecast.group_by("vehicle_id").agg(pl.col("baseline_value").unique().first()).iter_rows()) == \
        {"v1": 240.0, "v2": 290.0}


def test_what_needs_attention_is_listed_soonest_first():
    fleet, as_of = fleet_readings()
    forecast = forecast_maintenance(fleet, as_of, NO_DISTANCE, VEHICLES, CONFIG)
    listed = needing_attention(forecast, 30)
    assert listed.select("vehicle_id", "component").rows() == [("v1", "tire_rear_left")]
    everything = needing_attention(forecast, 10_000)
    due = everything["predicted_due_at"].drop_nulls()
    assert due.is_sorted() and everything.height > listed.height


def test_the_maintenance_command_needs_a_warehouse(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FLEETLAKE_DATA_DIR", str(tmp_path))  # the command sets it; restored afterwards
    assert cli.main(["--data-dir", str(tmp_path), "maintenance"]) == 2
    assert "run `fleetlake run` first" in capsys.readouterr().err
    assert not (tmp_path / "warehouse.duckdb").exists()


# --- the default fleet against the ground truth --------------------------------------------

def forecast_mart(data_dir) -> pl.DataFrame:
    # DuckDB hands timestamps back as Etc/UTC; the truth is in UTC.
    return mart(data_dir, "maintenance_forecast").with_columns(
        pl.col(pl.Datetime("us", "Etc/UTC")).dt.convert_time_zone("UTC"))


def with_truth(default_fleet, component: str) -> pl.DataFrame:
    """The truth of each vehicle's component joined to its forecast: every one on both sides."""
    expected = truth(default_fleet, "maintenance").filter(pl.col("component").str.starts_with(component))
    forecast = forecast_mart(default_fleet).filter(pl.col("component").str.starts_with(component))
    key = ["vehicle_id", "component"]
    assert expected.join(forecast, on=key, how="anti").is_empty() and forecast.join(expected, on=key, how="anti").is_empty()
    return expected.join(forecast, on=key, suffix="_mart")


def test_oil_due_dates_match_the_truth(default_fleet):
    oil = with_truth(default_fleet, "engine_oil")
    assert oil.height >= 15 and oil["urgency"].is_in(["PAST_DUE", "URGENT", "SOON", "OK"]).all()
    error_days = ((oil["predicted_due_at"] - oil["due_at"]).dt.total_seconds() / 86400).abs()
    assert error_days.null_count() == 0
    assert error_days.median() <= 3.0 and error_days.max() <= 5.0  # the worst is months out
    error_km = (oil["predicted_due_odometer_km"] - oil["due_odometer_km"]).abs()
    assert error_km.null_count() == 0
    assert error_km.median() <= 25.0 and error_km.max() <= 50.0
    assert (oil["current_value"] - oil["value_at_end"]).abs().max() <= 1.0


def tire_truth(default_fleet) -> pl.DataFrame:
    return truth(default_fleet, "maintenance").filter(pl.col("component").str.starts_with("tire"))


NEEDS_ATTENTION = pl.col("urgency").is_in(["PAST_DUE", "URGENT", "SOON"]) | pl.col("finding").is_not_null()


def test_every_leaking_tyre_is_flagged_and_no_healthy_one(default_fleet):
    tires = with_truth(default_fleet, "tire")
    leaking, healthy = tires.filter("is_leaking"), tires.filter(~pl.col("is_leaking"))
    assert leaking.height >= 5 and healthy.height >= 150
    # A tyre whose readings stopped (a revoked permission) cannot show a leak that began
    # after: it must then say UNKNOWN, never OK.
    silent = leaking.filter(pl.col("detail").str.contains("no reading since"))
    observed = leaking.filter(~pl.col("detail").str.contains("no reading since").fill_null(False))
    assert (silent["urgency"] != "OK").all()
    found = observed.filter((pl.col("finding") == "LEAKING") & pl.col("predicted_due_date").is_not_null())
    assert found.height >= 0.9 * observed.height and observed.height >= 0.75 * leaking.height
    assert healthy.filter(NEEDS_ATTENTION).is_empty()


def test_leaking_tyres_are_found_before_they_fall_below_the_threshold(default_fleet):
    """Replay the tyre forecast every 6 hours from the end of the baseline week to the tyre's
    last reading, as the pipeline would have run it then (only the readings up to that time,
    as of that time). A tyre is flagged when its forecast needs attention (PAST_DUE, URGENT,
    SOON) or finds a leak.

    Of the truly leaking tyres whose sensor kept reporting to the end of the data, at least
    90 % must be flagged before they fall below their threshold (the truth's due time) and
    before the data ends; no healthy tyre may be flagged at any time."""
    window_end = datetime.fromisoformat(
        json.loads((default_fleet / "ground_truth" / "summary.json").read_text())["window"]["end"])
    lake_readings, _ = load_maintenance_readings(LakeResource(data_dir=str(default_fleet)))
    tires = distinct_readings(lake_readings.filter(metric="tire_pressure_kpa")).with_columns(
        pl.col("component").replace_strict(TIRE_COMPONENTS))
    by_tire = tires.partition_by("vehicle_id", "component", as_dict=True)
    first_flags = []
    for tire in tire_truth(default_fleet).iter_rows(named=True):
        readings_of = by_tire[(tire["vehicle_id"], tire["component"])]
        start, end = float(readings_of["day"][0]) + CONFIG.tire_baseline_days + 1, float(readings_of["day"][-1])
        first_flag = None
        for cut in np.arange(start, end + 0.25, 0.25):
            row = forecast_tire(tire["vehicle_id"], tire["component"], readings_of.filter(pl.col("day") <= cut),
                                None, cut, CONFIG)
            if row["urgency"] in ("PAST_DUE", "URGENT", "SOON") or row["finding"] is not None:
                first_flag = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=cut)
                break
        last_reading = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=end)
        first_flags.append({**tire, "first_flag": first_flag, "last_reading": last_reading})
    replay = pl.DataFrame(first_flags)
    reporting = pl.col("last_reading") >= window_end - timedelta(days=CONFIG.stale_after_days)
    leaking = replay.filter("is_leaking", reporting)
    healthy = replay.filter(~pl.col("is_leaking"))
    assert leaking.height >= 5
    in_time = leaking.filter(pl.col("first_flag") < pl.min_horizontal("due_at", pl.lit(window_end)))
    assert in_time.height >= 0.9 * leaking.height, leaking.select("vehicle_id", "component", "due_at", "first_flag")
    assert healthy["first_flag"].null_count() == healthy.height


def test_falling_12v_batteries_are_flagged_and_healthy_ones_are_not(default_fleet):
    lv = with_truth(default_fleet, "low_voltage_battery")
    weak = lv.filter("is_weak")
    assert weak.height >= 1
    assert (weak["finding"] == "FALLING").all()
    error_days = ((weak["predicted_due_at"] - weak["due_at"]).dt.total_seconds() / 86400).abs()
    assert error_days.null_count() == 0 and error_days.median() <= 1.0 and error_days.max() <= 3.0
    assert lv.filter(~pl.col("is_weak"))["finding"].null_count() == lv.filter(~pl.col("is_weak")).height


def test_active_trouble_codes_match_the_truth(default_fleet):
    window_end = datetime.fromisoformat(
        json.loads((default_fleet / "ground_truth" / "summary.json").read_text())["window"]["end"])
    expected = truth(default_fleet, "dtc").filter(pl.col("cleared_at").is_null() | (pl.col("cleared_at") >= window_end))
    active = mart(default_fleet, "active_trouble_codes").with_columns(
        pl.col(pl.Datetime("us", "Etc/UTC")).dt.convert_time_zone("UTC"))
    assert sorted(active.select("vehicle_id", "code", "first_seen_at").rows()) == \
        sorted(expected.select("vehicle_id", "code", "first_seen_at").rows())
    diagnostics = forecast_mart(default_fleet).filter(component="diagnostics")
    flagged = set(diagnostics.filter(finding="ACTIVE_CODES")["vehicle_id"])
    assert flagged == set(expected["vehicle_id"])
    assert diagnostics.filter(~pl.col("vehicle_id").is_in(list(flagged)))["urgency"].unique().to_list() == ["OK"]


def listed(lines: list[str]) -> list[tuple[str, str]]:
    """(vehicle, component) of each row of the command's table, by the header's columns."""
    header = lines[0]
    vehicle, component, now = header.index("vehicle"), header.index("component"), header.index("now")
    return [(line[vehicle:component].strip(), line[component:now].strip()) for line in lines[1:]]


def test_the_maintenance_command_lists_what_is_due(default_fleet, capsys, monkeypatch):
    monkeypatch.setenv("FLEETLAKE_DATA_DIR", str(default_fleet))  # the command sets it; restored afterwards
    forecast = forecast_mart(default_fleet)
    for within in (7, 30):
        assert cli.main(["--data-dir", str(default_fleet), "maintenance", "--due-within", str(within)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split()[:4] == ["due", "urgency", "vehicle", "component"]
        dates = [date.fromisoformat(line.split()[0]) for line in lines[1:] if line[:4].isdigit()]
        assert len(dates) >= 3 and dates == sorted(dates)
        # exactly the forecasts due within the window of their vehicle's as-of, past due, or with a finding
        expected = forecast.filter((pl.col("days_until_due") <= within) | (pl.col("urgency") == "PAST_DUE")
                                   | pl.col("finding").is_not_null())
        assert sorted(listed(lines)) == sorted(expected.select("vehicle_id", "component").rows())
    between = forecast.filter(pl.col("days_until_due").is_between(7, 30, closed="right") & pl.col("finding").is_null()
                              & (pl.col("urgency") != "PAST_DUE"))
    assert between.height >= 1  # the window matters on this fleet


# --- the edges of each rule ------------------------------------------------------------------

EMPTY = series([], component=None)


def unknown_row(component: str, unit: str, detail: str, as_of_day: float = 20_000.0) -> dict:
    as_of = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=as_of_day)
    return {"vehicle_id": "v1", "component": component, "as_of": as_of, "current_value": None, "unit": unit,
            "baseline_value": None, "threshold_value": None, "trend_per_day": None, "trend_since": None,
            "predicted_due_at": None, "predicted_due_date": None, "predicted_due_odometer_km": None,
            "days_until_due": None, "urgency": "UNKNOWN", "finding": None, "detail": detail,
            "evidence_readings": 0}


def test_a_component_with_no_readings_is_unknown_and_says_so():
    assert forecast_oil("v1", oil_frame(np.array([]), np.array([])), 50.0, 20_000.0, CONFIG) == \
        unknown_row("engine_oil", "percent", "no oil-life readings")
    assert forecast_tire("v1", "tire_front_left", EMPTY, None, 20_000.0, CONFIG) == \
        unknown_row("tire_front_left", "kPa", "no pressure readings")
    assert forecast_low_voltage("v1", EMPTY, 20_000.0, CONFIG) == \
        unknown_row("low_voltage_battery", "percent", "no 12 V readings")


@pytest.mark.parametrize(("value", "expected"), [(15.0, "PAST_DUE"), (15.1, "UNKNOWN")])
def test_oil_with_too_few_readings_for_a_trend_is_past_due_only_at_or_below_due(value, expected):
    frame = oil_frame(np.array([value] * 3), np.array([1_000.0] * 3))
    row = forecast_oil("v1", frame, 50.0, last_day(frame), CONFIG)
    assert (row["urgency"], row["detail"], row["current_value"], row["threshold_value"], row["baseline_value"],
            row["unit"], row["evidence_readings"]) == (expected, "too few readings for a trend", value, 15.0,
                                                         100.0, "percent", 3)


@pytest.mark.parametrize(("value", "expected"), [(180.0, "PAST_DUE"), (181.0, "UNKNOWN")])
def test_a_tyre_with_too_few_readings_for_a_trend_is_past_due_only_at_or_below_its_threshold(value, expected):
    frame = series([value] * 3)
    row = forecast_tire("v1", "tire_front_left", frame, 240.0, last_day(frame), CONFIG)  # threshold 180 kPa
    assert (row["urgency"], row["detail"], row["current_value"], row["threshold_value"], row["baseline_value"],
            row["unit"], row["evidence_readings"], row["as_of"]) == \
        (expected, "too few readings for a trend", value, 180.0, 240.0, "kPa", 3, T0 + timedelta(hours=8))


@pytest.mark.parametrize(("value", "expected"), [(50.0, "PAST_DUE"), (50.5, "UNKNOWN")])
def test_a_12v_battery_with_too_few_readings_for_a_trend_is_past_due_only_at_or_below_due(value, expected):
    frame = series([value] * 3, metric="lv_battery_soc_pct", component=None)
    row = forecast_low_voltage("v1", frame, last_day(frame), CONFIG)
    assert (row["vehicle_id"], row["urgency"], row["detail"], row["current_value"], row["threshold_value"],
            row["unit"], row["evidence_readings"], row["as_of"]) == \
        ("v1", expected, "too few readings for a trend", value, 50.0, "percent", 3, T0 + timedelta(hours=8))


def test_a_12v_trend_reports_its_level_to_two_decimals():
    days = np.arange(20 * 6) / 6
    frame = series(list(80.123456 - 1.0 * days), metric="lv_battery_soc_pct", component=None)
    row = forecast_low_voltage("v1", frame, last_day(frame), CONFIG)
    assert row["current_value"] == round(row["current_value"], 2)
    assert row["current_value"] == pytest.approx(80.123456 - days[-1], abs=0.01)


def test_urgency_windows_include_their_last_day():
    assert [urgency(d, CONFIG) for d in (7.0, 7.01, 30.0, 30.01)] == ["URGENT", "SOON", "SOON", "OK"]


def test_a_silent_component_is_unknown_unless_it_was_already_past_due():
    stale_by = CONFIG.stale_after_days + 1
    low = series([170.0] * 3)  # below a 240 kPa placard's 180 kPa threshold
    row = forecast_tire("v1", "tire_front_left", low, 240.0, last_day(low) + stale_by, CONFIG)
    assert row["urgency"] == "PAST_DUE"
    assert row["detail"] == "too few readings for a trend; no reading since 2026-09-01"
    healthy = series([235.0] * 3)
    assert forecast_tire("v1", "tire_front_left", healthy, 240.0, last_day(healthy) + stale_by,
                         CONFIG)["urgency"] == "UNKNOWN"

def _status(vehicle: str, at: datetime, metric: str, component: str, value: float) -> pl.DataFrame:
    return pl.DataFrame([{"event_id": f"{vehicle}-{metric}-{component}-{at}", "vehicle_id": vehicle,
                          "reading_time": at, "metric": metric, "component": component, "value": value,
                          "noted_at": None, "delivered_at": at}], schema=READING_SCHEMA)


def test_the_cars_own_statuses_raise_urgency_and_stale_ones_do_not():
    fleet, as_of = fleet_readings()
    base = forecast_maintenance(fleet, as_of, NO_DISTANCE, VEHICLES, CONFIG)
    assert base["reported_status"].null_count() == base.height  # nothing reported, nothing changes
    v1_end = as_of.filter(vehicle_id="v1")["as_of"].item()
    v2_end = as_of.filter(vehicle_id="v2")["as_of"].item()
    statuses = pl.concat([
        # v1: 12 V WARN after GOOD, the check-engine lamp lit, the tyre-pressure system alerting
        _status("v1", v1_end - timedelta(days=2), "lv_battery_status", "GOOD", 0.0),
        _status("v1", v1_end - timedelta(hours=1), "lv_battery_status", "WARN", 1.0),
        _status("v1", v1_end - timedelta(hours=2), "system_status", "mil", 1.0),
        _status("v1", v1_end - timedelta(hours=2), "system_status", "washerfluid", 1.0),
        _status("v1", v1_end - timedelta(hours=2), "system_status", "tirepressure", 1.0),
        _status("v1", v1_end - timedelta(hours=2), "system_status", "abs", 0.0),
        # v2: a BAD 12 V and an alerting high-voltage battery, both a week before its as-of: stale
        _status("v2", v2_end - timedelta(days=7), "lv_battery_status", "BAD", 2.0),
        _status("v2", v2_end - timedelta(days=7), "system_status", "evhvbattery", 1.0),
        # v2, fresh: the high-voltage battery back to OK
        _status("v2", v2_end - timedelta(hours=3), "system_status", "evhvbattery", 0.0),
    ])
    raised = forecast_maintenance(pl.concat([fleet, statuses]), as_of, NO_DISTANCE, VEHICLES, CONFIG)
    row = {(r["vehicle_id"], r["component"]): r for r in raised.iter_rows(named=True)}
    before = {(r["vehicle_id"], r["component"]): r for r in base.iter_rows(named=True)}
    lv = row["v1", "low_voltage_battery"]
    assert before["v1", "low_voltage_battery"]["urgency"] == "OK"
    assert (lv["reported_status"], lv["urgency"], lv["finding"]) == ("WARN", "SOON", "STATUS_WARN")
    assert "12 V status WARN" in lv["detail"]
    diag = row["v1", "diagnostics"]
    assert (diag["reported_status"], diag["urgency"], diag["finding"]) == ("ALERT: mil, washerfluid", "URGENT",
                                                                          "SYSTEM_ALERT")
    for tyre in TIRE_COMPONENTS.values():
        r = row["v1", tyre]
        assert r["reported_status"] == "ALERT: tirepressure" and r["urgency"] in ("URGENT", "PAST_DUE")
    # a finding of the forecast's own stays; the car's alert is added to the detail
    assert row["v1", "tire_rear_left"]["finding"] == "LEAKING"
    assert "the car reports tirepressure ALERT" in row["v1", "tire_rear_left"]["detail"]
    # stale reports are no evidence; a fresh OK is reported and changes nothing
    assert row["v2", "low_voltage_battery"]["reported_status"] is None
    assert row["v2", "low_voltage_battery"]["urgency"] == before["v2", "low_voltage_battery"]["urgency"]
    assert (row["v2", "diagnostics"]["reported_status"], row["v2", "diagnostics"]["urgency"]) == \
        ("OK", before["v2", "diagnostics"]["urgency"])
    # every other row is as it was
    untouched = [k for k in before if row[k]["reported_status"] is None]
    assert all(row[k]["urgency"] == before[k]["urgency"] and row[k]["detail"] == before[k]["detail"]
               for k in untouched)


def test_a_service_restarts_the_oil_and_tyre_trends():
    # Oil life falls 1 %/day; at a service on day 8 the gauge goes back to 100 % from 93 % (a rise
    # smaller than the 10-point jump that marks an oil change on its own); then it falls again.
    hours = np.arange(0, 14 * 24, 4.0)
    service_h = 8 * 24 + 2.0
    oil = np.where(hours < service_h, 101.0 - hours / 24, 100.0 - (hours - service_h) / 24)
    oil_rows = readings(list(oil), "oil_life_pct").with_columns(odometer_km=pl.lit(None, pl.Float64))
    oil_rows = distinct_readings(oil_rows.drop("odometer_km")).with_columns(odometer_km=pl.lit(None, pl.Float64))
    as_of = last_day(oil_rows)
    serviced = day_of(T0 + timedelta(hours=service_h))
    without = forecast_oil("v1", oil_rows, None, as_of, CONFIG)
    with_service = forecast_oil("v1", oil_rows, None, as_of, CONFIG, serviced)
    assert with_service["trend_per_day"] == pytest.approx(-1.0, abs=0.01)
    assert with_service["trend_since"] == T0 + timedelta(hours=service_h + 2)  # first reading after it
    assert with_service["detail"] == f"since a service on {T0 + timedelta(hours=service_h):%Y-%m-%d}"
    # across the service the fit mixes two segments: a different and later due date
    assert without["trend_since"] == T0
    assert without["predicted_due_at"] != with_service["predicted_due_at"]
    # the due date with the service is where the new segment's line reaches 15 %
    expected = T0 + timedelta(hours=service_h) + timedelta(days=100.0 - CONFIG.oil_due_pct)
    assert abs((with_service["predicted_due_at"] - expected).total_seconds()) < 3 * 3600

    # A tyre losing 2 kPa/day is topped up by 8 kPa at a service on day 11 (less than the 10 kPa
    # rise that marks a re-inflation on its own) and keeps losing 2 kPa/day (a top-up mends no leak).
    service_h = 11 * 24 + 2.0
    serviced = day_of(T0 + timedelta(hours=service_h))
    tyre = np.where(hours < service_h, 240.0 - 2 * hours / 24, 248.0 - 2 * hours / 24)
    tyre_rows = series(list(tyre))
    as_of = last_day(tyre_rows)
    across = forecast_tire("v1", "tire_front_left", tyre_rows, None, as_of, CONFIG)
    after = forecast_tire("v1", "tire_front_left", tyre_rows, None, as_of, CONFIG, serviced)
    assert after["trend_per_day"] == pytest.approx(-2.0, abs=1e-6) and after["finding"] == "LEAKING"
    assert after["detail"].startswith("since a service on")
    # truth: 248 - 2 kPa/day reaches 75 % of the 240 kPa-ish baseline
    truth_due = T0 + timedelta(days=(248.0 - after["threshold_value"]) / 2.0)
    assert abs((after["predicted_due_at"] - truth_due).total_seconds()) < 3600
    # across the top-up the fit is pulled flatter and its due date is days off
    assert abs((across["predicted_due_at"] - truth_due).total_seconds()) > 86400
    # a service with no reading after it changes nothing
    late = day_of(T0 + timedelta(days=30))
    assert forecast_tire("v1", "tire_front_left", tyre_rows, None, as_of, CONFIG, late) == across


def test_the_fleet_forecast_takes_each_vehicles_latest_service_from_its_records():
    fleet, as_of = fleet_readings()
    v1_end = as_of.filter(vehicle_id="v1")["as_of"].item()
    service_time = v1_end - timedelta(days=3)
    record = pl.DataFrame([{"event_id": "svc", "vehicle_id": "v1", "reading_time": v1_end, "metric": "service_at",
                            "component": "SVC-1", "value": None, "noted_at": service_time, "delivered_at": v1_end}],
                          schema=READING_SCHEMA)
    forecast = forecast_maintenance(pl.concat([fleet, record]), as_of, NO_DISTANCE, VEHICLES, CONFIG)
    tyres = forecast.filter(vehicle_id="v1").filter(pl.col("component").str.starts_with("tire"))
    assert (tyres["trend_since"] >= service_time).all()
    assert tyres["detail"].str.contains(f"since a service on {service_time:%Y-%m-%d}").all() or \
        tyres["detail"].str.contains("loss rate from before").any()
    # v2 has no service record: unchanged
    base = forecast_maintenance(fleet, as_of, NO_DISTANCE, VEHICLES, CONFIG)
    assert forecast.filter(vehicle_id="v2").equals(base.filter(vehicle_id="v2"))


def test_a_12v_battery_falling_exactly_at_the_limit_is_falling_and_at_least_soon():
    config = MaintenanceConfig(lv_falling_pct_per_day=0.25)
    frame = series([90.0 - 0.0625 * k for k in range(20 * 4)], metric="lv_battery_soc_pct", component=None,
                   every_hours=6.0)  # exactly -0.25 %/day, readings every 6 h for 20 days
    row = forecast_low_voltage("v1", frame, last_day(frame), config)
    assert (row["finding"], row["trend_per_day"], row["urgency"]) == ("FALLING", -0.25, "SOON")  # due in 140 days
    assert row["current_value"] == 85.06  # 85.0625, to two decimals
    assert row["trend_since"] == T0 + timedelta(hours=6 * 79) - timedelta(days=14)


def test_a_vehicles_distance_per_day_is_the_same_to_the_last_bit_whoever_is_built_beside_it():
    """Batches of a full build and scoped builds compute each vehicle among different others:
    its distance per day (which turns an oil trend per km into one per day) must not move,
    not even in the last bit, with the frame around it or the order of its days."""
    rng = np.random.default_rng(7)
    as_of = pl.DataFrame({"vehicle_id": [f"v{i}" for i in range(40)],
                          "as_of": [datetime(2026, 9, 30, 22, 58, 26, tzinfo=UTC)] * 40})
    days = [date(2026, 9, 1) + timedelta(days=d) for d in range(30)]
    daily = pl.DataFrame({"vehicle_id": [f"v{i}" for i in range(40) for _ in days], "day": days * 40,
                          "distance_km": rng.uniform(0, 200, 40 * 30).round(1)})
    fleet = km_per_day(daily.sample(fraction=1.0, shuffle=True, seed=3), as_of, 14)
    for vehicle in ("v0", "v17", "v39"):
        alone = km_per_day(daily.filter(pl.col("vehicle_id") == vehicle).reverse(),
                           as_of.filter(pl.col("vehicle_id") == vehicle), 14)
        assert alone["km_per_day"][0] == fleet.filter(pl.col("vehicle_id") == vehicle)["km_per_day"][0]
    expected = daily.filter((pl.col("vehicle_id") == "v0") & (pl.col("day") >= date(2026, 9, 17)))["distance_km"].sum()
    assert fleet.filter(pl.col("vehicle_id") == "v0")["km_per_day"][0] == pytest.approx(expected / (13 + 82706 / 86400))
