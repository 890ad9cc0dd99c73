"""The default simulated fleet, end to end, against the simulator's ground truth."""

import json

import polars as pl
import pytest
from conftest import lake_table, mart, truth

from assets.parsing import read_landing_lines
from assets.raw import landing_files


def test_daily_distance_matches_the_truth_for_clean_vehicles(default_fleet):
    clean = truth(default_fleet, "vehicles").filter("clean_odometer").select("vehicle_id")
    assert clean.height >= 30
    compared = (
        truth(default_fleet, "daily_distance").join(clean, on="vehicle_id")
        .join(mart(default_fleet, "daily_mileage"), on=["vehicle_id", "day"], how="left", suffix="_mart")
        .with_columns(error_km=(pl.col("distance_km_mart").fill_null(0) - pl.col("distance_km")).abs())
    )
    # Odometers that report in miles round to 0.1 mi; nothing else separates us from the truth.
    assert compared["error_km"].max() < 0.5
    totals = compared.group_by("vehicle_id").agg(pl.col("distance_km").sum(), pl.col("distance_km_mart").sum())
    assert (totals["distance_km_mart"] / totals["distance_km"] - 1).abs().max() < 0.002


def test_every_landed_line_and_signal_is_accounted_for(default_fleet):
    landed = sum(read_landing_lines(p).height for p in landing_files(default_fleet / "landing"))
    health = mart(default_fleet, "pipeline_health").select(pl.exclude("day").sum()).row(0, named=True)
    assert health["deliveries_landed"] == landed
    assert health["deliveries_landed"] == health["deliveries_parsed"] + health["duplicates"] + health["quarantined"]
    assert health["signals"] == health["signals_read"] + health["signal_errors"] + health["signals_quarantined"]
    summary = json.loads((default_fleet / "ground_truth" / "summary.json").read_text())
    counts = summary.get("counts", summary)
    assert health["quarantined"] == counts["malformed"]
    assert health["duplicates"] == counts["duplicates"]
    assert health["deliveries_parsed"] == counts["deliveries"]


def test_injected_bad_values_are_quarantined(default_fleet):
    bad = truth(default_fleet, "faults").filter(pl.col("kind") == "BAD_VALUE")
    held = lake_table(default_fleet, "quarantine", "readings")
    assert bad.height > 0
    assert set(bad["event_id"]) <= set(held["event_id"])


def test_revoked_permissions_become_signal_errors(default_fleet):
    revoked = truth(default_fleet, "faults").filter(pl.col("kind") == "PERMISSION_REVOKED")
    errors = lake_table(default_fleet, "signal_errors")
    assert revoked.height > 0
    assert set(revoked["vehicle_id"]) <= set(errors.filter(pl.col("error_type") == "PERMISSION")["vehicle_id"])


def test_vehicles_mart_knows_every_vehicle_and_its_powertrain(default_fleet):
    expected = truth(default_fleet, "vehicles").select("vehicle_id", "make", "model", "powertrain")
    got = mart(default_fleet, "vehicles").select("vehicle_id", "make", "model", "powertrain", "battery_capacity_kwh")
    joined = expected.join(got, on="vehicle_id", how="left", suffix="_mart")
    assert joined.height == expected.height
    assert (joined["powertrain"] == joined["powertrain_mart"]).all()
    nominal = truth(default_fleet, "vehicles").select("vehicle_id", "nominal_capacity_kwh")
    capacities = got.join(nominal, on="vehicle_id").filter(pl.col("nominal_capacity_kwh").is_not_null())
    assert capacities["battery_capacity_kwh"].to_list() == pytest.approx(capacities["nominal_capacity_kwh"].to_list())


def test_vehicle_errors_mart_holds_every_injected_error(default_fleet):
    injected = truth(default_fleet, "faults").filter(pl.col("kind") == "VEHICLE_ERROR")
    assert mart(default_fleet, "vehicle_errors").height >= injected.height > 0
