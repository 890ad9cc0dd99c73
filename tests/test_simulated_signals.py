"""The marts against the simulator's truth for the newer signals: charge limits, the fast-charger
signal and the detailed charging status (sessions' limit, completion and current type), the
12 V battery status (the maintenance forecast), service records (against the odometer) and
the range (battery health's range at full charge). All on the session's default fleet."""
from __future__ import annotations

import json
from datetime import datetime, timedelta

import polars as pl
from conftest import mart, truth
from test_charging import matched_sessions


def _utc(frame: pl.DataFrame) -> pl.DataFrame:
    # DuckDB hands timestamps back as Etc/UTC; the truth is in UTC.
    return frame.with_columns(pl.col(pl.Datetime).dt.convert_time_zone("UTC"))


def _window_end(default_fleet) -> datetime:
    return datetime.fromisoformat(
        json.loads((default_fleet / "ground_truth" / "summary.json").read_text())["window"]["end"])


def test_sessions_limit_completion_and_current_type_match_the_truth(default_fleet):
    window_end = _window_end(default_fleet)
    found = _utc(mart(default_fleet, "charging_sessions"))
    true = truth(default_fleet, "charging_sessions").filter(pl.col("charge_ended_at") < window_end)
    vehicles = truth(default_fleet, "vehicles").select(
        "vehicle_id", "reports_charge_limits", "reports_fast_charger", "reports_charging_status")
    pairs = matched_sessions(found, true).join(vehicles, on="vehicle_id")
    limited = pairs.filter("reports_charge_limits")
    assert limited.height >= 100
    # the limit in force is the car's own setting, read from charge-chargelimits
    assert limited.select((pl.col("charge_limit_pct") == pl.col("charge_limit_pct_true")).mean()).item() == 1.0
    assert pairs.filter(~pl.col("reports_charge_limits"))["charge_limit_pct"].null_count() == \
        pairs.filter(~pl.col("reports_charge_limits")).height
    # completion: stopped at the limit (or said FULLY_CHARGED) vs unplugged first
    judged = limited.filter(pl.col("completion").is_not_null())
    agree = judged.select((pl.col("completion") == pl.col("completion_true")).mean()).item()
    interrupted = limited.filter(completion_true="interrupted")
    print(f"\ncompletion: {limited.height} sessions with a limit, {judged.height} judged, agreement {agree:.4f}, "
          f"{interrupted.height} truly interrupted")
    assert judged.height >= 0.95 * limited.height and agree >= 0.97
    assert interrupted.height >= 5
    # the words: FULLY_CHARGED after the charge makes a session complete, whatever the SoC says
    worded = limited.filter("reports_charging_status", completion_true="complete")
    assert worded.height >= 20 and (worded["completion"] == "complete").all()
    # current type: the car's fast-charger signal where it sends one, else power
    signal = pairs.filter("reports_fast_charger")
    assert signal.filter(pl.col("current_type") == "DC").height >= 5
    assert (signal["current_type_source"] == "fast_charger_signal").all()
    assert (signal["current_type"] == signal["current_type_true"]).all()
    share = pairs.select((pl.col("current_type") == pl.col("current_type_true")).mean()).item()
    print(f"current type: {pairs.height} sessions, {signal.height} from the fast-charger signal, agreement {share:.4f}")
    assert share >= 0.98


def test_the_12v_status_the_car_sends_is_the_forecasts_reported_status(default_fleet):
    lv = truth(default_fleet, "maintenance").filter(component="low_voltage_battery")
    forecast = _utc(mart(default_fleet, "maintenance_forecast")).filter(component="low_voltage_battery")
    both = lv.join(forecast, on=["vehicle_id", "component"], suffix="_mart")
    assert both.height == lv.height
    sent = both.filter(pl.col("status_at_end").is_not_null())
    print(f"\n12 V status: {sent.height} vehicles send it, "
          f"{sent.filter(pl.col('status_at_end') != 'GOOD').height} not GOOD at the end")
    assert sent.height >= 20
    assert (sent["reported_status"] == sent["status_at_end"]).all()
    assert both.filter(pl.col("status_at_end").is_null())["reported_status"].null_count() == \
        both.filter(pl.col("status_at_end").is_null()).height
    warned = sent.filter(pl.col("status_at_end") != "GOOD")
    assert warned.height >= 1
    # a weak battery keeps the forecast's own finding (FALLING); the status raises its urgency
    assert (warned["finding"] == "FALLING").all()
    floor = {"WARN": ("PAST_DUE", "URGENT", "SOON"), "BAD": ("PAST_DUE", "URGENT")}
    assert all(u in floor[s] for s, u in warned.select("status_at_end", "urgency").rows())
    assert sent.filter(status_at_end="GOOD", is_weak=False)["finding"].null_count() == \
        sent.filter(status_at_end="GOOD", is_weak=False).height


def test_service_records_match_the_truth_and_agree_with_the_odometer(default_fleet):
    window_end = _window_end(default_fleet)
    expected = truth(default_fleet, "service_records").filter("reported", pl.col("serviced_at") < window_end)
    records = _utc(mart(default_fleet, "service_records"))
    assert expected.height >= 1
    key = ["vehicle_id", "record_id", "serviced_at"]
    assert sorted(records.select(key).rows()) == sorted(expected.select(key).rows())
    both = records.join(expected, on=key)
    assert ((both["service_odometer_km"] - both["odometer_km"]).abs() <= 0.05).all()
    clean = set(truth(default_fleet, "vehicles").filter("clean_odometer")["vehicle_id"])
    on_clean = both.filter(pl.col("vehicle_id").is_in(list(clean)))
    print(f"\nservice records: {both.height} ({on_clean.height} on clean odometers), "
          f"odometer difference max {on_clean['difference_km'].abs().max()} km")
    assert (on_clean["odometer_check"] == "agrees").all()
    assert on_clean["difference_km"].abs().max() <= 5.0


def test_the_range_at_full_charge_is_usable_capacity_over_consumption(default_fleet):
    vehicles = truth(default_fleet, "vehicles").filter("reports_range", pl.col("powertrain") != "ICE")
    health = mart(default_fleet, "battery_health").filter(pl.col("range_at_full_km").is_not_null())
    both = health.join(vehicles.select("vehicle_id", pl.col("range_at_full_km").alias("true_km")), on="vehicle_id")
    assert both.height >= 20
    assert set(health["vehicle_id"]) <= set(vehicles["vehicle_id"])  # only cars that send it
    error = (both["range_at_full_km"] / both["true_km"] - 1).abs()
    print(f"\nrange at full: {both.height} vehicle months, error median {error.median():.4f}, max {error.max():.4f}")
    assert error.median() <= 0.005 and error.max() <= 0.02


def test_diagnostics_statuses_are_the_systems_the_active_codes_alert(default_fleet):
    """The `diagnostics-*` statuses a car sends (ALERT for the systems its active trouble codes
    concern, OK once they clear; a car sends the statuses of the systems its codes concern) are
    the diagnostics forecast's reported status, and raise its urgency."""
    window_end = _window_end(default_fleet)
    vehicles = truth(default_fleet, "vehicles").select("vehicle_id", "reports_system_status")
    codes = truth(default_fleet, "dtc").filter(pl.col("first_seen_at") <= window_end).with_columns(
        active=pl.col("cleared_at").is_null() | (pl.col("cleared_at") > window_end))
    systems = (codes.explode("alert_systems").drop_nulls("alert_systems").group_by("vehicle_id")
               .agg(pl.col("alert_systems").filter("active").unique().sort().str.join(", ").alias("alerting"),
                    pl.len().alias("concerned")))
    forecast = mart(default_fleet, "maintenance_forecast").filter(component="diagnostics")
    both = (vehicles.join(systems, on="vehicle_id", how="left")
            .join(forecast.select("vehicle_id", "reported_status", "urgency"), on="vehicle_id"))
    assert both.height == vehicles.height
    alerted = both.filter(pl.col("alerting").str.len_chars() > 0)
    cleared = both.filter(pl.col("concerned") > 0, pl.col("alerting") == "")
    silent = both.filter(~pl.col("reports_system_status"))
    print(f"\ndiagnostics statuses: {both.filter('reports_system_status').height} vehicles send them, "
          f"{alerted.height} with systems in ALERT, {cleared.height} whose codes cleared")
    assert alerted.height >= 3 and silent.height >= 5
    assert alerted.select("reported_status").to_series().to_list() == \
        ("ALERT: " + alerted["alerting"]).to_list()
    assert (cleared["reported_status"] == "OK").all()
    # no code in the window: nothing in ALERT (a code raised after the window may already have its OK sent)
    assert not both.filter(pl.col("concerned").is_null())["reported_status"].str.starts_with("ALERT").any()
    assert silent["reported_status"].null_count() == silent.height  # a car that sends none has none
    assert alerted["urgency"].is_in(["PAST_DUE", "URGENT", "SOON"]).all()


def test_the_cars_own_charge_records_check_and_correct_the_sessions(default_fleet):
    """Cars that send `charge-chargerecords` (Volkswagen's, which report no energy counter):
    each session carries its own record, whose energy (the car's measurement) replaces the
    state-of-charge estimate and is the true energy."""
    window_end = _window_end(default_fleet)
    found = _utc(mart(default_fleet, "charging_sessions"))
    true = truth(default_fleet, "charging_sessions").filter(pl.col("charge_ended_at") < window_end)
    pairs = matched_sessions(found, true)
    recorded = pairs.filter(pl.col("charge_record_id_true").is_not_null())
    # a record is sent with the slow readings after the charge: the last day's may not be out yet
    settled = recorded.filter(pl.col("charge_ended_at") < window_end - timedelta(days=1))
    with_record = settled.filter(pl.col("charge_record_id").is_not_null())
    print(f"\ncharge records: {recorded.height} sessions of cars that send them, "
          f"{with_record.height} of {settled.height} settled ones matched to their record")
    assert settled.height >= 20 and with_record.height >= 0.95 * settled.height
    assert (with_record["charge_record_id"] == with_record["charge_record_id_true"]).all()
    assert ((with_record["charge_record_energy_kwh"] - with_record["energy_added_kwh_true"]).abs() <= 0.01).all()
    assert (with_record["energy_source"] == "charge_record").all()  # no counter: the record replaces the estimate
    assert ((with_record["energy_added_kwh"] / with_record["energy_added_kwh_true"] - 1).abs() <= 0.005).all()
    # cars that keep no records have none
    assert pairs.filter(pl.col("charge_record_id_true").is_null())["charge_record_id"].null_count() == \
        pairs.filter(pl.col("charge_record_id_true").is_null()).height
