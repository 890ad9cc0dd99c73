"""Raw signals → readings, signal errors and quarantine (assets/normalize.py)."""

import json

import polars as pl
import pytest
from deliveries import delivery, signal, write_landing

from assets.normalize import normalize_signals
from assets.parsing import parse_lines, read_landing_lines

AT = "2026-09-01T08:00:00.000Z"
DELIVERED = 1788249900000  # 2026-09-01T08:05:00Z


def normalize(tmp_path, signals):
    path = write_landing(tmp_path / "a.ndjson", [delivery("e", signals=signals, delivered_at=DELIVERED)])
    raw = parse_lines(read_landing_lines(path, source_file="a", batch_id="b")).signals
    result = normalize_signals(raw)
    # Nothing is lost: each signal is a reading, an error or quarantined, exactly once.
    read = result.readings.select("signal_index").unique().height
    assert read + result.signal_errors.height + result.quarantine.height == raw.height
    return result


def value_of(result, metric, component=None):
    rows = result.readings.filter(pl.col("metric") == metric)
    if component:
        rows = rows.filter(pl.col("component") == component)
    return rows["value"].item()


@pytest.mark.parametrize(("code", "body", "metric", "expected"), [
    ("odometer-traveleddistance", {"value": 100, "unit": "km"}, "odometer_km", 100),
    ("odometer-traveleddistance", {"value": 100, "unit": "kilometers"}, "odometer_km", 100),
    ("odometer-traveleddistance", {"value": 100, "unit": "mi"}, "odometer_km", 160.9344),
    ("odometer-traveleddistance", {"value": 100, "unit": "miles"}, "odometer_km", 160.9344),
    ("charge-wattage", {"value": 7400, "unit": "watts"}, "charge_power_kw", 7.4),
    ("charge-wattage", {"value": 7400, "unit": "W"}, "charge_power_kw", 7.4),
    ("charge-wattage", {"value": 50.5, "unit": "kW"}, "charge_power_kw", 50.5),
    ("charge-energyadded", {"value": 1500, "unit": "Wh"}, "energy_added_kwh", 1.5),
    ("tractionbattery-nominalcapacity", {"capacity": 75, "unit": "kWh"}, "battery_capacity_kwh", 75),
    ("tractionbattery-stateofcharge", {"value": 55.5, "unit": "percent"}, "soc_pct", 55.5),
    ("internalcombustionengine-oillife", {"value": 40, "unit": "percent"}, "oil_life_pct", 40),
    ("lowvoltagebattery-stateofcharge", {"value": 88, "unit": "percent"}, "lv_battery_soc_pct", 88),
    ("charge-amperage", {"value": 16, "unit": "ampere"}, "charge_current_a", 16),
    ("tractionbattery-nominalcapacity", {"capacity": 64, "unit": "kWhr"}, "battery_capacity_kwh", 64),
])
def test_values_are_converted_by_the_unit_that_came_with_them(tmp_path, code, body, metric, expected):
    result = normalize(tmp_path, [signal(code, body, AT)])
    assert value_of(result, metric) == pytest.approx(expected)
    assert result.readings["source_unit"].item() == body.get("unit")


@pytest.mark.parametrize(("unit", "factor"), [("kPa", 1.0), ("bar", 100.0), ("psi", 6.894757)])
def test_tyres_by_position_in_kpa(tmp_path, unit, factor):
    values = [{"row": r, "column": c, "tirePressure": 2.4 + r + c / 10} for r in (0, 1) for c in (0, 1)]
    result = normalize(tmp_path, [signal("wheel-tires", {"values": values, "unit": unit}, AT)])
    assert value_of(result, "tire_pressure_kpa", "front_left") == pytest.approx(2.4 * factor)
    assert value_of(result, "tire_pressure_kpa", "front_right") == pytest.approx(2.5 * factor)
    assert value_of(result, "tire_pressure_kpa", "rear_left") == pytest.approx(3.4 * factor)
    assert value_of(result, "tire_pressure_kpa", "rear_right") == pytest.approx(3.5 * factor)


def test_booleans_location_and_trouble_codes(tmp_path):
    result = normalize(tmp_path, [
        signal("charge-ischarging", {"value": True}, AT),
        signal("charge-ischargingcableconnected", {"value": False}, AT),
        signal("location-preciselocation", {"latitude": 52.37, "longitude": 4.89, "heading": 90}, AT),
        signal("diagnostics-dtclist", {"values": [{"code": "P0420", "timestamp": "2026-08-30T10:00:00Z"},
                                                  {"code": "U0100", "timestamp": None}]}, AT),
    ])
    assert value_of(result, "is_charging") == 1.0
    assert value_of(result, "is_plugged_in") == 0.0
    assert value_of(result, "latitude_deg") == 52.37
    assert value_of(result, "longitude_deg") == 4.89
    assert value_of(result, "dtc_count") == 2.0
    codes = result.readings.filter(pl.col("metric") == "dtc_code").sort("component")
    assert codes["component"].to_list() == ["P0420", "U0100"]
    assert str(codes["noted_at"][0]) == "2026-08-30 10:00:00+00:00"


@pytest.mark.parametrize(("sig", "reason"), [
    (signal("odometer-traveleddistance", {"value": "12.3", "unit": "km"}, AT), "wrong_type"),
    (signal("odometer-traveleddistance", {"value": 12, "unit": "furlongs"}, AT), "unknown_unit"),
    (signal("odometer-traveleddistance", {"value": 12}, AT), "missing_unit"),
    (signal("odometer-traveleddistance", {"unit": "km"}, AT), "missing_value"),
    (signal("odometer-traveleddistance", {"value": -3, "unit": "km"}, AT), "out_of_range"),
    (signal("tractionbattery-stateofcharge", {"value": 180, "unit": "percent"}, AT), "out_of_range"),
    (signal("charge-ischarging", {"value": "true"}, AT), "wrong_type"),
    (signal("location-preciselocation", {"latitude": 91, "longitude": 0}, AT), "out_of_range"),
    (signal("wheel-tires", {"values": [{"row": 0, "column": 0, "tirePressure": 240},
                                       {"row": 5, "column": 0, "tirePressure": 240}], "unit": "kPa"}, AT),
     "malformed_body"),
    (signal("wheel-tires", {"values": [{"row": 0, "column": 0, "tirePressure": None}], "unit": "kPa"}, AT),
     "missing_value"),
    (signal("wheel-tires", {"values": [], "unit": "kPa"}, AT), "missing_value"),
    (signal("odometer-traveleddistance", [1, 2], AT), "malformed_body"),
    (signal("odometer-traveleddistance", None, AT), "missing_body"),
    (signal("odometer-traveleddistance", {"value": 1, "unit": "km"}, "not a time"), "invalid_timestamp"),
    (signal("odometer-traveleddistance", {"value": 1, "unit": "km"}, "2026-09-09T00:00:00Z"), "implausible_timestamp"),
    (signal("odometer-traveleddistance", {"value": 1, "unit": "km"}, "2019-12-31T00:00:00Z"), "implausible_timestamp"),
    (signal("climate-cabintemperature", {"value": 21, "unit": "celsius"}, AT), "unsupported_signal"),
    (signal("lowvoltagebattery-status", {"value": "SO-SO"}, AT), "unknown_value"),
    (signal("charge-detailedchargingstatus", {"value": 3}, AT), "wrong_type"),
    (signal("charge-detailedchargingstatus", {"value": "  "}, AT), "missing_value"),
    (signal("charge-detailedchargingstatus", {}, AT), "missing_value"),
    (signal("charge-isfastchargerpresent", {"value": "yes"}, AT), "wrong_type"),
    (signal("diagnostics-mil", {"status": "BLINKING"}, AT), "unknown_value"),
    (signal("service-records", {"values": [{"id": "a", "time": "not a time", "odometer": 5}]}, AT),
     "invalid_timestamp"),
    (signal("service-records", {"values": [{"id": "a", "odometer": "5"}]}, AT), "wrong_type"),
    (signal("service-records", {"values": [{"id": "a", "odometer": -5}]}, AT), "out_of_range"),
    (signal("service-records", {"values": ["oil change"]}, AT), "malformed_body"),
    (signal("service-records", {"values": {"id": "a"}}, AT), "wrong_type"),
    (signal("service-records", {}, AT), "missing_value"),
    (signal("diagnostics-mil", {"status": True}, AT), "wrong_type"),
    (signal("diagnostics-mil", {"description": "no status"}, AT), "missing_value"),
])
def test_bad_values_are_quarantined_with_a_reason(tmp_path, sig, reason):
    result = normalize(tmp_path, [sig])
    assert result.readings.height == 0
    assert result.quarantine["reason"].to_list() == [reason]
    kept = result.quarantine["body"].item()
    assert (json.loads(kept) if kept is not None else None) == sig.get("body")  # the original body is kept


def test_a_signal_with_error_status_is_a_signal_error(tmp_path):
    result = normalize(tmp_path, [signal("location-preciselocation", None, None, retrieved=AT,
                                         status={"value": "ERROR", "error": {"type": "PERMISSION",
                                                                             "code": "PERMISSION_REVOKED"}})])
    assert result.signal_errors.select("code", "error_type", "error_code").rows() == [
        ("location-preciselocation", "PERMISSION", "PERMISSION_REVOKED")]


def test_every_reading_lands_on_its_reading_day(tmp_path):
    result = normalize(tmp_path, [signal("odometer-traveleddistance", {"value": 1, "unit": "km"},
                                         "2026-08-31T23:59:59Z")])
    assert str(result.readings["day"].item()) == "2026-08-31"


def test_a_day_normalized_in_shards_of_vehicles_gives_what_one_pass_gives(tmp_path, monkeypatch):
    import assets.readings
    from assets.normalize import NormalizedSignals
    from assets.readings import normalize_in_shards

    good = [signal("odometer-traveleddistance", {"value": 100 + n, "unit": "km"}) for n in range(3)]
    bad = [signal("odometer-traveleddistance", {"value": "far", "unit": "km"}),
           signal("tractionbattery-stateofcharge", {"value": 50, "unit": "percent"}, status={"value": "ERROR", "error": {"type": "VEHICLE", "code": "X"}})]
    deliveries = [delivery(f"e{n}", vehicle_id=f"v{n % 7}", signals=good + bad, delivered_at=DELIVERED + n)
                  for n in range(40)]
    path = write_landing(tmp_path / "a.ndjson", deliveries)
    raw = parse_lines(read_landing_lines(path, source_file="a", batch_id="b")).signals
    monkeypatch.setattr(assets.readings, "SHARD_SIGNALS", 30)
    shards = list(normalize_in_shards(raw))
    assert len(shards) == 6  # 200 signals of 7 vehicles, about 30 each: ranges of one or two vehicles
    sharded = NormalizedSignals(*(pl.concat(getattr(s, t) for s in shards) for t in ("readings", "signal_errors", "quarantine")))
    whole = normalize_signals(raw)
    for table in ("readings", "signal_errors", "quarantine"):
        one, other = getattr(sharded, table), getattr(whole, table)
        assert one.height == other.height > 0
        assert one.sort(one.columns, nulls_last=True).equals(other.sort(other.columns, nulls_last=True))
    assert sharded.readings.select("vehicle_id").to_series().is_sorted()  # the shards are ranges of vehicles, in order
    assert sharded.readings.equals(whole.readings)
