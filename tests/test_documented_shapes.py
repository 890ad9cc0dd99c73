"""Every body shape, field name, unit spelling and envelope variant that Smartcar's own pages
show is read. Each fixture below is a documented example, with the page it came from."""


import polars as pl
import pytest
from deliveries import delivery, write_landing

from assets.normalize import normalize_signals
from assets.parsing import parse_lines, read_landing_lines

TRACTION = "https://smartcar.com/docs/api-reference/signals/tractionbattery"
CHARGE = "https://smartcar.com/docs/api-reference/signals/charge"
CHARGE_PREVIEW = "https://deploy-preview-1146--smartcar-home.netlify.app/docs/api-reference/signals/charge"
LOW_VOLTAGE = "https://deploy-preview-1146--smartcar-home.netlify.app/docs/api-reference/signals/lowvoltagebattery"
RESPONSES = "https://smartcar.com/docs/integrations/webhooks/responses"
RESPONSES_V4 = "https://smartcar-docs.mintlify.dev/docs/integrations/webhooks/responses"
GET_SIGNAL = "https://smartcar.com/docs/api-reference/get-signal"
VEHICLE_STATE = "https://smartcar.com/docs/api-reference/webhooks/events/vehicle-state"
VEHICLE_ERROR = "https://smartcar.com/docs/api-reference/webhooks/events/vehicle-error"
# The diagnostics page documents every system status as {status: ALERT | OK, description}.
DIAGNOSTICS = "https://smartcar.com/docs/api-reference/signals/diagnostics"
SERVICE = "https://smartcar.com/docs/api-reference/signals/service"
SERVICE_PREVIEW = "https://deploy-preview-1146--smartcar-home.netlify.app/docs/api-reference/signals/service"
SERVICE_MINTLIFY = "https://smartcar-docs.mintlify.app/api-reference/signals/service"
# The wheel page documents tyre pressures as {values: [{row, column, tirePressure}]} with no unit.
WHEEL = "https://smartcar.com/docs/api-reference/signals/wheel"

AT_MS = 1758668712404  # retrievedAt / oemUpdatedAt of the v4 example: 2025-09-23T23:05:12.404Z

# (page, code, body, metric, component, value, source_unit)
DOCUMENTED_SIGNALS = [
    (TRACTION, "tractionbattery-nominalcapacity",
     {"source": "SMARTCAR", "capacity": 73.5, "availableCapacities": [
         {"capacity": 73.5, "description": "BEV:Extended Range"}, {"capacity": 80.9, "description": None}],
      "unit": "kWhr"}, "battery_capacity_kwh", None, 73.5, "kWhr"),
    (TRACTION, "tractionbattery-nominalcapacity", {"source": "SMARTCAR", "capacity": 75},
     "battery_capacity_kwh", None, 75.0, "kWh (assumed)"),
    (TRACTION, "tractionbattery-range", {"unit": "kilometers", "value": 350}, "range_km", None, 350.0, "kilometers"),
    (TRACTION, "tractionbattery-stateofcharge", {"unit": "percent", "value": 75}, "soc_pct", None, 75.0, "percent"),
    (RESPONSES, "tractionbattery-stateofcharge", {"percentage": 75}, "soc_pct", None, 75.0, "percent (assumed)"),
    (RESPONSES, "location-preciselocation",
     {"latitude": 37.7749, "longitude": -122.4194, "heading": 90, "direction": "N", "locationType": "CURRENT"},
     "latitude_deg", None, 37.7749, None),
    (RESPONSES_V4, "location-preciselocation", {"latitude": 37.7749, "longitude": -122.4194},
     "longitude_deg", None, -122.4194, None),
    (CHARGE, "charge-amperage", {"unit": "amps", "value": 32}, "charge_current_a", None, 32.0, "amps"),
    (CHARGE, "charge-chargelimits",
     {"values": [{"type": "global", "limit": 80, "condition": None},
                 {"type": "location", "limit": 90, "condition": {"name": "Home", "address": "123 Main St",
                                                                 "latitude": 37.7749, "longitude": -122.4194}}],
      "activeLimit": 100, "unit": "percent"}, "charge_limit_pct", None, 100.0, "percent"),
    (CHARGE_PREVIEW, "charge-chargelimits",
     {"values": [{"type": "global", "limit": 80, "condition": None},
                 {"type": "location", "limit": 90, "condition": {"name": "Home", "address": "123 Main St",
                                                                 "latitude": 37.7749, "longitude": -122.4194}}]},
     "charge_limit_pct", None, 80.0, "percent (assumed)"),
    # the charge page documents the fast-charger signal as a boolean `{value}`
    (CHARGE, "charge-isfastchargerpresent", {"value": True}, "is_fast_charger", None, 1.0, None),
    (GET_SIGNAL, "charge-voltage", {"unit": "volts", "value": 85}, "charge_voltage_v", None, 85.0, "volts"),
    (LOW_VOLTAGE, "lowvoltagebattery-stateofcharge", {"unit": "percent", "value": 95}, "lv_battery_soc_pct", None,
     95.0, "percent"),
    (LOW_VOLTAGE, "lowvoltagebattery-status", {"value": "GOOD"}, "lv_battery_status", "GOOD", 0.0, None),
    (DIAGNOSTICS, "diagnostics-abs", {"status": "OK", "description": "ABS system functioning normally"},
     "system_status", "abs", 0.0, None),
    (DIAGNOSTICS, "diagnostics-mil", {"status": "ALERT"}, "system_status", "mil", 1.0, None),
    (LOW_VOLTAGE, "lowvoltagebattery-status", {"value": "BAD"}, "lv_battery_status", "BAD", 2.0, None),
    (WHEEL, "wheel-tires", {"values": [{"row": r, "column": c, "tirePressure": 240 + r * 10 + c}
                                       for r in (0, 1) for c in (0, 1)]},
     "tire_pressure_kpa", "rear_right", 251.0, "kPa (assumed)"),
]


def _signal(code: str, body: dict, meta: dict | None = None) -> dict:
    return {"code": code, "name": code.split("-", 1)[1], "group": code.split("-")[0], "body": body,
            "status": {"value": "SUCCESS"}, "meta": meta if meta is not None else {"retrievedAt": AT_MS,
                                                                                     "oemUpdatedAt": AT_MS}}


def _normalize(tmp_path, lines: list[dict]):
    path = write_landing(tmp_path / "docs.ndjson", lines)
    raw = parse_lines(read_landing_lines(path, source_file="docs", batch_id="b"))
    return raw, normalize_signals(raw.signals)


def test_every_documented_signal_example_is_read_with_its_value_and_unit(tmp_path):
    lines = [delivery(f"e{i}", signals=[_signal(code, body)], delivered_at=AT_MS + 60_000)
             for i, (_, code, body, *_rest) in enumerate(DOCUMENTED_SIGNALS)]
    raw, result = _normalize(tmp_path, lines)
    assert result.quarantine.is_empty(), result.quarantine.select("code", "reason", "body").rows()
    read = result.readings.select("event_id").unique().height
    assert read / len(DOCUMENTED_SIGNALS) == 1.0  # the share of documented instances read
    for i, (page, code, _body, metric, component, value, unit) in enumerate(DOCUMENTED_SIGNALS):
        rows = result.readings.filter((pl.col("event_id") == f"e{i}") & (pl.col("metric") == metric))
        if component is not None:
            rows = rows.filter(pl.col("component") == component)
        assert rows.height == 1, (page, code)
        assert rows["value"].item() == pytest.approx(value), (page, code)
        assert rows["source_unit"].item() == unit, (page, code)


def test_every_documented_diagnostics_system_status_is_read(tmp_path):
    from assets.signal_catalog import DIAGNOSTIC_SYSTEMS

    lines = [delivery(f"d{i}{status}", signals=[_signal(f"diagnostics-{system}", {"status": status, "description": None})],
                      delivered_at=AT_MS + 60_000)
             for i, system in enumerate(DIAGNOSTIC_SYSTEMS) for status in ("OK", "ALERT")]
    _, result = _normalize(tmp_path, lines)
    assert result.quarantine.is_empty()
    got = sorted(result.readings.select("component", "value").rows())
    assert got == sorted((system, value) for system in DIAGNOSTIC_SYSTEMS for value in (0.0, 1.0))


# Both examples the service pages show: ISO time on one, epoch milliseconds on the other; no unit
# for the odometer (kilometres, as the service-history endpoint documents)
SERVICE_EXAMPLES = [
    (SERVICE_PREVIEW, {"values": [{"id": "SVC-2024-001", "cost": {"amount": 150, "currency": "USD"},
                                   "time": "2024-01-15T14:30:00Z",
                                   "tasks": [{"id": "TSK-001", "description": "Oil Change"}],
                                   "details": [{"id": "DTL-001", "description": "5W-30 Synthetic Oil Used"}],
                                   "odometer": 50000}]},
     "SVC-2024-001", "2024-01-15T14:30:00+00:00", 50000.0),
    (SERVICE_MINTLIFY, {"values": [{"id": "SVC-20230427-001", "time": 1682591400000, "odometer": 45231,
                                    "tasks": [{"id": "task-001", "description": "Oil change"}],
                                    "details": [{"id": "detail-001", "description": "Used synthetic oil"}],
                                    "cost": {"currency": "USD", "amount": 349.95}}]},
     "SVC-20230427-001", "2023-04-27T10:30:00+00:00", 45231.0),
]


@pytest.mark.parametrize(("page", "body", "record", "at", "odometer"), SERVICE_EXAMPLES)
def test_documented_service_records_are_read_with_their_time_and_odometer(tmp_path, page, body, record, at,
                                                                           odometer):
    _, result = _normalize(tmp_path, [delivery("s", signals=[_signal("service-records", body)],
                                               delivered_at=AT_MS + 60_000)])
    assert result.quarantine.is_empty(), page
    rows = {r["metric"]: r for r in result.readings.iter_rows(named=True)}
    assert rows["service_record_count"]["value"] == 1.0
    assert rows["service_at"]["component"] == record and rows["service_at"]["noted_at"].isoformat() == at
    assert rows["service_odometer_km"]["value"] == odometer
    assert rows["service_odometer_km"]["source_unit"] == "km (assumed)"


def test_a_service_list_may_be_empty_and_a_record_need_not_carry_an_odometer(tmp_path):
    lines = [delivery("none", signals=[_signal("service-records", {"values": []})], delivered_at=AT_MS + 60_000),
             delivery("bare", signals=[_signal("service-records", {"values": [{"id": "A", "time": "2024-02-01"}]})],
                      delivered_at=AT_MS + 60_000)]
    _, result = _normalize(tmp_path, lines)
    assert result.quarantine.is_empty()
    got = sorted(result.readings.select("event_id", "metric", "value").rows(), key=str)
    assert got == sorted([("bare", "service_at", None), ("bare", "service_record_count", 1.0),
                          ("none", "service_record_count", 0.0)], key=str)


# The charge page's records example (signal `charge-chargerecords`): no unit (kWh documented),
# the location and cost stay in the raw body
CHARGE_RECORD = {"id": "CHG123", "cost": {"currency": "USD", "otherAmount": 2, "energyAmount": 10.5},
                 "endTime": "2023-10-15T08:00:00Z",
                 "location": {"name": "Home Charger", "address": "123 Main St", "latitude": 37.7749,
                              "longitude": -122.4194},
                 "startTime": "2023-10-15T00:00:00Z", "energyAdded": 40.5, "connectorType": "J1772",
                 "isPublicCharger": False, "endStateOfCharge": 90, "startStateOfCharge": 20}


def test_the_documented_charge_record_is_read_with_its_times_energy_and_charge(tmp_path):
    _, result = _normalize(tmp_path, [delivery("r", signals=[_signal("charge-chargerecords", {"values": [CHARGE_RECORD]})],
                                               delivered_at=AT_MS + 60_000)])
    assert result.quarantine.is_empty(), CHARGE
    rows = {r["metric"]: r for r in result.readings.iter_rows(named=True)}
    assert rows["charge_record_count"]["value"] == 1.0
    assert {m for m in rows if m != "charge_record_count"} == {
        "charge_record_started_at", "charge_record_ended_at", "charge_record_energy_kwh",
        "charge_record_soc_start_pct", "charge_record_soc_end_pct"}
    assert {r["component"] for m, r in rows.items() if m != "charge_record_count"} == {"CHG123"}
    assert rows["charge_record_started_at"]["noted_at"].isoformat() == "2023-10-15T00:00:00+00:00"
    assert rows["charge_record_ended_at"]["noted_at"].isoformat() == "2023-10-15T08:00:00+00:00"
    assert rows["charge_record_energy_kwh"]["value"] == 40.5
    assert rows["charge_record_energy_kwh"]["source_unit"] == "kWh (assumed)"
    assert (rows["charge_record_soc_start_pct"]["value"], rows["charge_record_soc_end_pct"]["value"]) == (20.0, 90.0)
    assert not result.readings["metric"].is_in(["latitude_deg", "longitude_deg"]).any()  # no position from a record


def test_charge_records_without_an_id_or_any_record_and_broken_ones(tmp_path):
    bare = {"startTime": 1697328000, "energyAdded": 12}  # epoch seconds, no id: the start names it
    lines = [delivery("none", signals=[_signal("charge-chargerecords", {"values": []})], delivered_at=AT_MS + 60_000),
             delivery("bare", signals=[_signal("charge-chargerecords", {"values": [bare]})], delivered_at=AT_MS + 60_000),
             *(delivery(f"bad{i}", signals=[_signal("charge-chargerecords", {"values": [CHARGE_RECORD | broken]})],
                        delivered_at=AT_MS + 60_000)
               for i, broken in enumerate([{"energyAdded": -3}, {"endStateOfCharge": 140}, {"startTime": "soon"},
                                           {"energyAdded": "40.5"}]))]
    _, result = _normalize(tmp_path, lines)
    assert sorted(result.quarantine.select("event_id", "reason").rows()) == [
        ("bad0", "out_of_range"), ("bad1", "out_of_range"), ("bad2", "invalid_timestamp"), ("bad3", "wrong_type")]
    got = sorted(result.readings.select("event_id", "metric", "component", "value").rows(), key=str)
    assert got == sorted([("bare", "charge_record_count", None, 1.0),
                          ("bare", "charge_record_energy_kwh", "2023-10-15T00:00:00Z", 12.0),
                          ("bare", "charge_record_started_at", "2023-10-15T00:00:00Z", None),
                          ("none", "charge_record_count", None, 0.0)], key=str)


def test_the_detailed_charging_status_word_is_kept_as_sent(tmp_path):
    # The charge page documents `charge-detailedchargingstatus` as `{value: string}`, example
    # {"value": "CHARGING"}, values CHARGING, NOT_CHARGING, FULLY_CHARGED; other pages and
    # makes send other words: every word is kept, upper-cased, as the reading's component.
    words = ["CHARGING", "NOT_CHARGING", "Fully_Charged", " DC_FAST_CHARGING "]
    lines = [delivery(f"w{i}", signals=[_signal("charge-detailedchargingstatus", {"value": w})],
                      delivered_at=AT_MS + 60_000) for i, w in enumerate(words)]
    _, result = _normalize(tmp_path, lines)
    assert result.quarantine.is_empty()
    rows = result.readings.sort("event_id").select("metric", "component", "value", "source_code").rows()
    assert rows == [("charging_status", w.strip().upper(), None, "charge-detailedchargingstatus") for w in words]


def test_payload_texts_analysts_need_are_kept(tmp_path):
    # nominal capacity's source (SMARTCAR / USER_SELECTED) and location's locationType
    lines = [delivery("cap", signals=[_signal("tractionbattery-nominalcapacity",
                                              {"source": "USER_SELECTED", "capacity": 64, "unit": "kWh"})],
                      delivered_at=AT_MS + 60_000),
             delivery("loc", signals=[_signal("location-preciselocation", DOCUMENTED_SIGNALS[5][2])],
                      delivered_at=AT_MS + 60_000)]
    _, result = _normalize(tmp_path, lines)
    texts = result.readings.filter(pl.col("value").is_null()).select("event_id", "metric", "component").sort("event_id")
    assert texts.rows() == [("cap", "battery_capacity_source", "USER_SELECTED"), ("loc", "location_type", "CURRENT")]


def test_the_documented_v4_delivery_is_read_whole(tmp_path):
    # RESPONSES_V4: retrievedAt/oemUpdatedAt in epoch milliseconds, a signal error, triggers with a signal object
    line = {
        "eventId": "5a537912-9ad3-424b-ba33-65a1704567e9", "eventType": "VEHICLE_STATE",
        "data": {"user": {"id": "93b3ea96-ca37-43a9-9073-f4334712dbc7"},
                 "vehicle": {"id": "123e4567-e89b-12d3-a456-426614174000", "make": "Test Make",
                             "model": "Test Model", "year": 2020},
                 "signals": [
                     _signal("location-preciselocation", {"latitude": 37.7749, "longitude": -122.4194}),
                     {"code": "location-isathome", "name": "IsAtHome", "group": "Location",
                      "status": {"error": {"code": "VEHICLE_NOT_CAPABLE", "type": "COMPATIBILITY"}, "value": "ERROR"}},
                     _signal("tractionbattery-stateofcharge", {"unit": "percent", "value": 75})]},
        "triggers": [{"type": "SIGNAL_UPDATED", "signal": {"name": "StateOfCharge", "group": "TractionBattery",
                                                           "code": "tractionbattery-stateofcharge"}}],
        "meta": {"version": "4.0", "deliveryId": "48b25f8f-9fea-42e1-9085-81043682cbb8", "deliveredAt": 1761896351529,
                 "webhookId": "123e4567-e89b-12d3-a456-426614174000", "webhookName": "My First Webhook",
                 "signalCount": 3, "mode": "LIVE"}}
    raw, result = _normalize(tmp_path, [line])
    d = raw.deliveries.row(0, named=True)
    assert (d["trigger_types"], d["trigger_signals"], d["first_delivery"]) == (
        ["SIGNAL_UPDATED"], ["tractionbattery-stateofcharge"], False)
    assert result.signal_errors["error_code"].to_list() == ["VEHICLE_NOT_CAPABLE"]
    assert str(result.readings["reading_time"][0]) == "2025-09-23 23:05:12.404000+00:00"
    assert result.quarantine.is_empty()


def test_the_documented_v3_delivery_with_seconds_and_percentage(tmp_path):
    # RESPONSES: deliveredAt in epoch seconds, no signal meta (the delivery time applies), {percentage}
    line = {"eventId": "1234567890", "eventType": "VEHICLE_STATE",
            "data": {"vehicle": {"id": "123e4567-e89b-12d3-a456-426614174000", "make": "Test Make",
                                 "model": "Test Model", "year": 2020, "vin": "1HGCM82633A123456"},
                     "signals": [{"code": "tractionbattery-stateofcharge", "name": "StateOfCharge",
                                  "group": "TractionBattery", "body": {"percentage": 75}}],
                     "user": {"id": "user_1234567890"}},
            "triggers": [{"type": "SIGNAL_UPDATED", "signal": {"code": "tractionbattery-stateofcharge"}}],
            "meta": {"version": "3.0", "deliveryId": "1234567890", "deliveredAt": 1700000000,
                     "webhookId": "123e4567-e89b-12d3-a456-426614174000", "webhookName": "Charge Places Webhook",
                     "signalCount": 5, "mode": "LIVE"}}
    raw, result = _normalize(tmp_path, [line])
    r = result.readings.row(0, named=True)
    assert (r["metric"], r["value"], r["time_source"]) == ("soc_pct", 75.0, "delivered")
    assert str(r["reading_time"]) == "2023-11-14 22:13:20+00:00"


@pytest.mark.parametrize(("triggers", "types", "signals"), [
    # VEHICLE_STATE: a changed signal as {code, name, group}, and the first delivery as {code}
    ([{"code": "tractionbattery-stateofcharge", "name": "StateOfCharge", "group": "TractionBattery"}],
     ["SIGNAL_UPDATED"], ["tractionbattery-stateofcharge"]),
    ([{"code": "FIRST_DELIVERY"}], ["FIRST_DELIVERY"], None),
    # RESPONSES: FIRST_DELIVERY as a trigger type
    ([{"type": "FIRST_DELIVERY"}], ["FIRST_DELIVERY"], None),
    # a plain string signal (DESIGN.md's valid input)
    ([{"type": "SIGNAL_UPDATED", "signal": "charge-ischarging"}], ["SIGNAL_UPDATED"], ["charge-ischarging"]),
])
def test_trigger_shapes_and_first_delivery(tmp_path, triggers, types, signals):
    line = delivery("e", signals=[_signal("tractionbattery-stateofcharge", {"unit": "percent", "value": 75})],
                    delivered_at=AT_MS + 60_000)
    line["triggers"] = triggers
    raw, _ = _normalize(tmp_path, [line])
    d = raw.deliveries.row(0, named=True)
    assert (d["trigger_types"], d["trigger_signals"]) == (types, signals)
    assert d["first_delivery"] == (types == ["FIRST_DELIVERY"])


def test_triggers_under_data_vehicle_id_at_top_level_and_fetched_at(tmp_path):
    # VEHICLE_STATE's payload structure: vehicleId at the top level; triggers may sit under data;
    # some pages call the read time fetchedAt, in epoch seconds
    line = delivery("e", signals=[_signal("tractionbattery-stateofcharge", {"unit": "percent", "value": 75},
                                          meta={"fetchedAt": AT_MS // 1000})], delivered_at=AT_MS + 60_000)
    del line["data"]["vehicle"]["id"]
    line["vehicleId"] = "veh-top"
    line["data"]["triggers"] = line.pop("triggers")
    raw, result = _normalize(tmp_path, [line])
    d = raw.deliveries.row(0, named=True)
    assert d["vehicle_id"] == "veh-top" and d["trigger_types"] == ["SIGNAL_UPDATED"]
    r = result.readings.row(0, named=True)
    assert r["time_source"] == "retrieved" and str(r["reading_time"]) == "2025-09-23 23:05:12+00:00"


def test_a_vehicle_error_keeps_the_signals_it_affects_and_its_resolution(tmp_path):
    # VEHICLE_ERROR: errors carry the affected signals; a resolved error comes back with state RESOLVED
    def error(event_id: str, state: str) -> dict:
        return delivery(event_id, event_type="VEHICLE_ERROR", delivered_at=AT_MS + 60_000, errors=[{
            "type": "COMPATIBILITY", "code": "VEHICLE_NOT_CAPABLE", "state": state,
            "description": "This vehicle doesn't support the signal", "resolution": {"type": "CONTACT_SUPPORT"},
            "signals": [{"code": "charge-chargelimits", "name": "ChargeLimits", "group": "Charge"},
                        "tractionbattery-range"]}])
    raw, _ = _normalize(tmp_path, [error("e1", "ERROR"), error("e2", "RESOLVED")])
    rows = raw.vehicle_errors.sort("event_id").select("state", "resolution", "signals").rows()
    assert rows == [("ERROR", "CONTACT_SUPPORT", ["charge-chargelimits", "tractionbattery-range"]),
                    ("RESOLVED", "CONTACT_SUPPORT", ["charge-chargelimits", "tractionbattery-range"])]

