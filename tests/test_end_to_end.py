"""The default simulated fleet, end to end, against the simulator's ground truth."""

import gzip
import json

import polars as pl
import pytest
from conftest import lake_table, mart, truth

from assets.raw import landing_files


def exact_join(expected: pl.DataFrame, got: pl.DataFrame, on: list[str], suffix: str = "_mart") -> pl.DataFrame:
    """Expected and got row by row: every key on both sides, once."""
    assert expected.join(got, on=on, how="anti").is_empty(), "missing from what was built"
    assert got.join(expected, on=on, how="anti").is_empty(), "built but not expected"
    assert not expected.select(on).is_duplicated().any() and not got.select(on).is_duplicated().any()
    return expected.join(got, on=on, suffix=suffix)


def landed_lines(path) -> int:
    """Lines in a landing file, counted from its bytes (a last line without its newline counts)."""
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def test_daily_distance_matches_the_truth_for_clean_vehicles(default_fleet):
    clean = truth(default_fleet, "vehicles").filter("clean_odometer").select("vehicle_id")
    assert clean.height >= 30
    compared = exact_join(
        truth(default_fleet, "daily_distance").join(clean, on="vehicle_id"),
        mart(default_fleet, "daily_mileage").join(clean, on="vehicle_id"), on=["vehicle_id", "day"],
    ).with_columns(error_km=(pl.col("distance_km_mart") - pl.col("distance_km")).abs())
    # Odometers that report in miles round to 0.1 mi; nothing else separates us from the truth.
    assert compared["error_km"].max() < 0.5
    totals = compared.group_by("vehicle_id").agg(pl.col("distance_km").sum(), pl.col("distance_km_mart").sum())
    assert (totals["distance_km_mart"] / totals["distance_km"] - 1).abs().max() < 0.002


def test_every_landed_line_and_signal_is_accounted_for(default_fleet):
    landed = sum(landed_lines(p) for p in landing_files(default_fleet / "landing"))
    health = mart(default_fleet, "pipeline_health").select(pl.exclude("day").sum()).row(0, named=True)
    assert health["deliveries_landed"] == landed  # the landing files themselves
    # each outcome as stored in the lake, not as counted by the code that stored it
    assert health["deliveries_parsed"] == lake_table(default_fleet, "raw", "deliveries").height
    assert health["duplicates"] == lake_table(default_fleet, "raw", "duplicates").height
    assert health["quarantined"] == lake_table(default_fleet, "quarantine", "deliveries").height
    readings = lake_table(default_fleet, "readings")
    assert health["signals"] == lake_table(default_fleet, "raw", "signals").height
    assert health["signals_read"] == readings.select(pl.struct("event_id", "signal_index").n_unique()).item()
    assert health["signal_errors"] == lake_table(default_fleet, "signal_errors").height
    assert health["signals_quarantined"] == lake_table(default_fleet, "quarantine", "readings").height
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
    joined = exact_join(expected, got, on=["vehicle_id"])
    assert joined.height == expected.height == 50
    assert joined.filter(pl.col("powertrain") != pl.col("powertrain_mart")).is_empty()
    assert joined.select(pl.sum_horizontal(pl.col("make", "model", "powertrain_mart").null_count())).item() == 0
    assert (joined["make"] == joined["make_mart"]).all() and (joined["model"] == joined["model_mart"]).all()
    nominal = truth(default_fleet, "vehicles").select("vehicle_id", "nominal_capacity_kwh")
    capacities = got.join(nominal, on="vehicle_id").filter(pl.col("nominal_capacity_kwh").is_not_null())
    assert capacities["battery_capacity_kwh"].to_list() == pytest.approx(capacities["nominal_capacity_kwh"].to_list())


def test_vehicle_errors_mart_holds_every_injected_error(default_fleet):
    injected = truth(default_fleet, "faults").filter(pl.col("kind") == "VEHICLE_ERROR")
    assert mart(default_fleet, "vehicle_errors").height >= injected.height > 0
