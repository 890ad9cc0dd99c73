"""Delivery bodies as JSON lines (Smartcar webhooks, payload version 4.0).

VEHICLE_STATE lines are concatenated column-wise with Polars from precompiled fragments;
every number is formatted by Polars from an already-rounded float, which is valid JSON.
The few VEHICLE_ERROR and VERIFY lines are dumped one by one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import polars as pl

from . import catalog as C
from .catalog import SIGNALS
from .geo import compass

TRIGGER_CODES = (
    "odometer-traveleddistance",
    "charge-ischargingcableconnected",
    "charge-ischarging",
    "tractionbattery-stateofcharge",
    "lowvoltagebattery-stateofcharge",
    "internalcombustionengine-fuellevel",
)
TRIGGER_ODOMETER, TRIGGER_CABLE, TRIGGER_CHARGING, TRIGGER_SOC, TRIGGER_LOW_VOLTAGE, TRIGGER_FUEL = range(6)
TRIGGER_OBJ = tuple(
    '{"type":"SIGNAL_UPDATED","signal":{"code":"%s","name":"%s","group":"%s"}}' % (c, *SIGNALS[c])
    for c in TRIGGER_CODES
)
TRIGGER_STR = tuple('{"type":"SIGNAL_UPDATED","signal":"%s"}' % c for c in TRIGGER_CODES)
# Polars builds its intermediate string columns for this many lines at a time (bounds memory).
ENCODE_ROWS = 8192


def dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _status_error(error_type: str, code: str, description: str) -> str:
    return dumps({"value": "ERROR", "error": {"type": error_type, "code": code, "description": description}})


REVOKED_STATUS = _status_error("PERMISSION", "PERMISSION_REVOKED", C.REVOKED_DESCRIPTION)
TRANSIENT_STATUS = _status_error(*C.TRANSIENT_ERROR)


def _vehicle(fleet, v: int) -> dict:
    vehicle = {"id": str(fleet.vehicle_id[v]), "make": fleet.make[v], "model": fleet.model[v],
               "year": int(fleet.year[v])}
    if fleet.vin[v]:
        vehicle["vin"] = fleet.vin[v]
    return vehicle


def vehicle_fragment(fleet, v: int) -> str:
    return '"user":' + dumps({"id": str(fleet.user_id[v])}) + ',"vehicle":' + dumps(_vehicle(fleet, v))


@dataclass
class PayloadFormats:
    """Per vehicle (indexed by vehicle): what its deliveries look like, fixed for the whole run."""

    webhook_ids: np.ndarray  # per webhook
    vehicle_fragment: np.ndarray
    webhook_tail: np.ndarray
    delivered_at_in_seconds: np.ndarray
    plain_string_triggers: np.ndarray
    has_battery: np.ndarray
    has_engine: np.ndarray
    reports_wattage: np.ndarray
    wattage_unit: np.ndarray
    without_oem_time: dict  # signal code -> bool per vehicle
    nominal_capacity: np.ndarray  # text, as reported
    vehicles_with_dtcs: set
    newer: NewerFormats


def payload_formats(fleet, webhook_ids: np.ndarray) -> PayloadFormats:
    webhook_tails = np.array([',"webhookId":"%s","webhookName":"%s","mode":"TEST"' % (webhook_ids[i], webhook[0])
                              for i, webhook in enumerate(C.WEBHOOKS)], dtype=object)
    return PayloadFormats(
        webhook_ids=webhook_ids,
        vehicle_fragment=np.array([vehicle_fragment(fleet, v) for v in range(fleet.size)], dtype=object),
        webhook_tail=webhook_tails[fleet.webhook_index],
        delivered_at_in_seconds=np.array([webhook[2] for webhook in C.WEBHOOKS])[fleet.webhook_index],
        plain_string_triggers=np.array([webhook[3] for webhook in C.WEBHOOKS])[fleet.webhook_index],
        has_battery=fleet.powertrain != C.ICE,
        has_engine=fleet.powertrain != C.BEV,
        reports_wattage=np.array([unit is not None for unit in fleet.wattage_unit]),
        wattage_unit=np.array([unit or "W" for unit in fleet.wattage_unit], dtype=object),
        without_oem_time={code: np.array([code in signals for signals in fleet.without_oem_time])
                          for code in C.SIGNALS},
        nominal_capacity=np.array(["%s" % x for x in np.round(fleet.nominal_capacity_kwh, 1)], dtype=object),
        vehicles_with_dtcs={v for v in range(fleet.size) if fleet.trouble_codes[v]},
        newer=newer_formats(fleet),
    )


@dataclass
class NewerFormats:
    """Per vehicle: which of the newer signals (``catalog.NEWER_SIGNALS``) it sends, and their
    fixed parts. A signal is sent only where the car has what it describes."""

    range: np.ndarray  # traction battery, make reports range
    range_km_per_pct: np.ndarray  # usable capacity / consumption / 100
    range_unit: np.ndarray  # the make's spelling of km
    limits: np.ndarray
    limits_body: np.ndarray  # the charge-limits body (the limit is a setting, fixed for the run)
    fast_charger: np.ndarray  # a DC inlet, make reports the fast-charger signal
    charging_status: np.ndarray
    low_voltage_status: np.ndarray
    systems: list  # per vehicle: the diagnostics systems it reports (those its trouble codes raise)
    service_records: np.ndarray  # an engine, make reports service records
    charge_records: np.ndarray  # a traction battery, make reports its charge records


def newer_formats(fleet) -> NewerFormats:
    has_battery = fleet.powertrain != C.ICE
    has_engine = fleet.powertrain != C.BEV

    def reports(code: str) -> np.ndarray:
        return np.array([code in signals for signals in fleet.newer_signals], dtype=bool)

    systems = []
    for v in range(fleet.size):
        raised = {system for code, _, _ in fleet.trouble_codes[v] for system in C.DTC_SYSTEMS.get(code, ())}
        systems.append(tuple(s for s in C.DIAGNOSTIC_SYSTEMS if s in raised)
                       if C.SYSTEM_STATUS in fleet.newer_signals[v] else ())
    limit = np.nan_to_num(fleet.charge_limit_pct, nan=100.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        km_per_pct = np.where(has_battery, fleet.usable_capacity_kwh / fleet.consumption_kwh_per_km / 100.0, 0.0)
    return NewerFormats(
        range=has_battery & reports(C.RANGE), range_km_per_pct=km_per_pct,
        range_unit=np.array(fleet.km_spelling, dtype=object),
        limits=has_battery & reports(C.LIMITS),
        limits_body=np.array(['{"values":[{"type":"global","limit":%d,"condition":null}],"activeLimit":%d,'
                              '"unit":"percent"}' % (x, x) for x in limit], dtype=object),
        fast_charger=np.isfinite(fleet.dc_max_kw) & reports(C.FAST_CHARGER),
        charging_status=has_battery & reports(C.CHARGING_STATUS),
        low_voltage_status=reports(C.LOW_VOLTAGE_STATUS), systems=systems,
        service_records=has_engine & reports(C.SERVICE_RECORDS),
        charge_records=has_battery & reports(C.CHARGE_RECORDS))


def low_voltage_status(soc_pct: np.ndarray) -> np.ndarray:
    """The 12 V battery's status word (GOOD, WARN, BAD) from its true state of charge."""
    return np.where(soc_pct < C.LOW_VOLTAGE_BAD_BELOW_PCT, "BAD",
                    np.where(soc_pct < C.LOW_VOLTAGE_WARN_BELOW_PCT, "WARN", "GOOD")).astype(object)


def service_record_id(fleet, v: int, at: float) -> str:
    return "SVC-%s-%s" % (datetime.fromtimestamp(at, tz=timezone.utc).strftime("%Y%m%d"),
                          str(fleet.vehicle_id[v])[:8].upper())


def charge_record_id(fleet, v: int, started_at: float) -> str:
    return "CR-%s-%s" % (str(fleet.vehicle_id[v])[:8].upper(),
                         datetime.fromtimestamp(started_at, tz=timezone.utc).strftime("%Y%m%dT%H%M%S"))


def charge_record(fleet, session: tuple) -> dict:
    """A session as the car's own charge record (the charge page's shape; energy in kWh)."""
    v, _plugged, started, ended, _unplugged, location, _dc, soc_start, soc_end, energy = session[:10]
    return {"id": charge_record_id(fleet, v, started), "startTime": _iso_seconds(started),
            "endTime": _iso_seconds(ended), "energyAdded": round(float(energy), 2),
            "isPublicCharger": location == "public", "startStateOfCharge": round(float(soc_start), 1),
            "endStateOfCharge": round(float(soc_end), 1)}


def newer_signal_columns(fleet, formats: PayloadFormats, vehicle: np.ndarray, at: np.ndarray, state,
                         slow: np.ndarray, fast_charger: np.ndarray, low_voltage_soc_pct: np.ndarray,
                         service_at_s: np.ndarray, service_odometer_km: np.ndarray, sessions: list = ()) -> dict:
    """The newer signals' columns of the day's readings (None where a reading does not carry one).

    Range and the charging words go with every reading of a car that sends them, the charge
    limit with slow and plugged-in readings, the 12 V status, system statuses and service
    records with slow readings, and so do charge records (the sessions that ended in the last
    CHARGE_RECORD_DAYS; ``sessions``: the fleet's sessions so far). ``fast_charger``: the reading falls in a DC session (plugged in
    at a fast charger); ``service_at_s``/``service_odometer_km``: per vehicle, its oil change
    (inf: none yet)."""
    newer = formats.newer
    count = len(vehicle)
    columns = {
        "include_range": newer.range[vehicle],
        "range_km": np.round(state.soc_pct * newer.range_km_per_pct[vehicle], 1),
        "range_unit": newer.range_unit[vehicle],
        "include_limits": newer.limits[vehicle] & (slow | state.plugged),
        "limits_body": newer.limits_body[vehicle],
        "include_fast_charger": newer.fast_charger[vehicle],
        "fast_charger": fast_charger & state.plugged,
    }
    full = state.plugged & ~state.charging & (state.soc_pct >= np.nan_to_num(fleet.charge_limit_pct[vehicle]) - 1.0)
    word = np.where(state.charging, "CHARGING", np.where(full, "FULLY_CHARGED", "NOT_CHARGING")).astype(object)
    columns["charging_status"] = np.where(newer.charging_status[vehicle], word, None)
    columns["low_voltage_status"] = np.where(newer.low_voltage_status[vehicle] & slow,
                                             low_voltage_status(low_voltage_soc_pct), None)
    for system in C.DIAGNOSTIC_SYSTEMS:
        columns["system_" + system] = np.full(count, None, dtype=object)
    service = np.full(count, None, dtype=object)
    charge_records = np.full(count, None, dtype=object)
    ended_by_vehicle: dict[int, list] = {}
    for session in sessions:
        if newer.charge_records[session[0]]:
            ended_by_vehicle.setdefault(session[0], []).append(session)
    for i in np.nonzero(slow)[0]:
        v, t = int(vehicle[i]), float(at[i])
        if newer.systems[v]:
            active = {s for code, first_seen, cleared in fleet.trouble_codes[v]
                      if first_seen <= t and (cleared is None or t < cleared) for s in C.DTC_SYSTEMS.get(code, ())}
            for system in newer.systems[v]:
                columns["system_" + system][i] = "ALERT" if system in active else "OK"
        if newer.service_records[v]:
            records = []
            if service_at_s[v] <= t:
                records.append({"id": service_record_id(fleet, v, float(service_at_s[v])),
                                "time": _iso_seconds(float(service_at_s[v])),
                                "odometer": round(float(service_odometer_km[v]), 1),
                                "tasks": [{"id": "TSK-1", "description": "Oil change"}]})
            service[i] = dumps({"values": records})
        if newer.charge_records[v]:
            recent = [charge_record(fleet, s) for s in ended_by_vehicle.get(v, ())
                      if t - C.CHARGE_RECORD_DAYS * 86_400 < s[3] <= t]
            charge_records[i] = dumps({"values": recent})
    columns["service_body"] = service
    columns["charge_records_body"] = charge_records
    return columns


def triggers_json(formats: PayloadFormats, vehicle: np.ndarray, event_trigger: np.ndarray, driving: np.ndarray,
                  charging: np.ndarray, slow: np.ndarray) -> np.ndarray:
    """An event reading names its event; a grid reading the signal most likely to have changed."""
    grid_trigger = np.where(driving, TRIGGER_ODOMETER, np.where(
        charging, TRIGGER_SOC, np.where(slow, TRIGGER_LOW_VOLTAGE,
                                        np.where(formats.has_battery[vehicle], TRIGGER_SOC, TRIGGER_FUEL))))
    trigger = np.where(event_trigger < 0, grid_trigger, event_trigger)
    return np.where(formats.plain_string_triggers[vehicle], np.array(TRIGGER_STR, dtype=object)[trigger],
                    np.array(TRIGGER_OBJ, dtype=object)[trigger])


def _iso_seconds(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def dtc_lists_json(formats: PayloadFormats, fleet, vehicle: np.ndarray, at: np.ndarray,
                   slow: np.ndarray) -> np.ndarray:
    """The active trouble codes, in the readings that carry slow signals ("[]" elsewhere)."""
    dtc_json = np.full(len(vehicle), "[]", dtype=object)
    if formats.vehicles_with_dtcs:
        for i in np.nonzero(slow & np.isin(vehicle, list(formats.vehicles_with_dtcs)))[0]:
            v, t = int(vehicle[i]), float(at[i])
            active = [{"code": code, "timestamp": _iso_seconds(first_seen)} for code, first_seen, cleared
                      in fleet.trouble_codes[v] if first_seen <= t and (cleared is None or t < cleared)]
            dtc_json[i] = dumps(active)
    return dtc_json


def _strings(values) -> pl.Series:
    return pl.Series(np.asarray(values, dtype=object).tolist(), dtype=pl.String)


def _text(column: str, override: str | None = None) -> pl.Expr:
    """A number or flag as its JSON text, unless a fault put raw text in its place."""
    as_text = pl.col(column).cast(pl.String)
    if override is not None:
        as_text = pl.coalesce(pl.col(override), as_text)
    return as_text.alias(column)


@dataclass
class StateLines:
    """VEHICLE_STATE lines: ``prefix + deliveryId + '","deliveredAt":' + number + tail``."""

    prefix: pl.Series  # kept apart so that a duplicate can be re-sent with a new deliveryId
    tail: pl.Series
    lines: list
    signal_count: int


def vehicle_state_lines(fleet, formats: PayloadFormats, readings, state, values, odometer_value: np.ndarray,
                        odometer_unit: np.ndarray, signal_faults, times, delivered_number: np.ndarray,
                        event_id: np.ndarray, delivery_id: np.ndarray, slow: np.ndarray,
                        trigger_json: np.ndarray, dtc_json: np.ndarray, newer: dict) -> StateLines:
    vehicle = readings.vehicle
    without_oem_time = formats.without_oem_time
    overrides, errors = signal_faults.overrides, signal_faults.errors
    frame = pl.DataFrame({
        "event_id": event_id, "vehicle_fragment": _strings(formats.vehicle_fragment[vehicle]),
        "has_battery": formats.has_battery[vehicle], "has_engine": formats.has_engine[vehicle], "slow": slow,
        "reports_wattage": formats.reports_wattage[vehicle],
        "wattage_unit": _strings(formats.wattage_unit[vehicle]),
        "reports_voltage_amperage": fleet.reports_voltage_amperage[vehicle],
        "reports_energy_added": fleet.reports_energy_added[vehicle],
        "oem_updated_ms": times.oem_updated_ms, "retrieved_ms": times.retrieved_ms,
        "no_oem_time_odometer": without_oem_time["odometer-traveleddistance"][vehicle],
        "no_oem_time_location": without_oem_time["location-preciselocation"][vehicle],
        "no_oem_time_tires": without_oem_time["wheel-tires"][vehicle],
        "no_oem_time_oil_life": without_oem_time["internalcombustionengine-oillife"][vehicle],
        "no_oem_time_fuel": without_oem_time["internalcombustionengine-fuellevel"][vehicle],
        "no_oem_time_low_voltage_soc": without_oem_time["lowvoltagebattery-stateofcharge"][vehicle],
        "odometer": odometer_value, "odometer_unit": _strings(odometer_unit), "soc": values.soc_pct,
        "nominal_capacity": _strings(formats.nominal_capacity[vehicle]),
        "is_charging": state.charging, "is_plugged": state.plugged, "wattage": values.wattage,
        "voltage": values.voltage, "amperage": values.amperage, "energy_added": values.energy_added_kwh,
        "lat": values.lat, "lon": values.lon, "heading": values.heading,
        "direction": _strings(compass(values.heading).astype(object)),
        "tire_front_left": values.tires[:, 0], "tire_front_right": values.tires[:, 1],
        "tire_rear_left": values.tires[:, 2], "tire_rear_right": values.tires[:, 3],
        "tire_unit": _strings(values.tire_unit), "oil_life": values.oil_life_pct, "fuel": values.fuel_pct,
        "low_voltage_soc": values.low_voltage_soc_pct,
        "dtc_list_json": _strings(dtc_json), "triggers_json": _strings(trigger_json),
        **{name: (_strings(values) if values.dtype == object else values) for name, values in newer.items()},
        "webhook_tail": _strings(formats.webhook_tail[vehicle]),
        **{name + "_override": _strings(raw) for name, raw in overrides.items()},
        **{name + "_error": _strings(status) for name, status in errors.items()},
    }, strict=False)
    frame = frame.with_columns(
        iso_ms(pl.col("oem_updated_ms")).alias("oem_updated_at"),
        iso_ms(pl.col("retrieved_ms")).alias("retrieved_at"),
        _text("odometer", "odometer_override"),
        pl.coalesce(pl.col("odometer_unit_override"), pl.col("odometer_unit")).alias("odometer_unit"),
        _text("soc", "soc_override"),
        _text("is_charging"), _text("is_plugged"), _text("wattage"), _text("voltage"), _text("amperage"),
        _text("energy_added"), _text("lat"), _text("lon"), _text("heading"),
        _text("tire_front_left", "tire_front_left_override"), _text("tire_front_right"), _text("tire_rear_left"),
        _text("tire_rear_right"), _text("oil_life"), _text("fuel", "fuel_override"),
        _text("low_voltage_soc", "low_voltage_soc_override"),
        _text("range_km"), _text("fast_charger"),
    )
    encoded = pl.concat([build_state_lines(frame.slice(offset, ENCODE_ROWS))
                         for offset in range(0, max(len(frame), 1), ENCODE_ROWS)])
    del frame
    lines = pl.DataFrame({"prefix": encoded["prefix"], "delivery_id": pl.Series(delivery_id),
                          "delivered_at": pl.Series(delivered_number), "tail": encoded["tail"]}).select(
        pl.concat_str([pl.col("prefix"), pl.col("delivery_id"), pl.lit('","deliveredAt":'),
                       pl.col("delivered_at").cast(pl.String), pl.col("tail")]).alias("line"))["line"]
    return StateLines(encoded["prefix"], encoded["tail"], lines.to_list(), int(encoded["signal_count"].sum()))


def _head(code: str) -> str:
    name, group = SIGNALS[code]
    return '{"code":"%s","name":"%s","group":"%s"' % (code, name, group)


def _s(x: str) -> pl.Expr:
    return pl.lit(x, dtype=pl.String)


def _signal(code: str, body: list, include: pl.Expr, without_oem_time: str | None = None,
            error: str | None = None) -> pl.Expr:
    head = _head(code)
    meta = (pl.when(pl.col(without_oem_time)).then(pl.col("meta_retrieved_only")).otherwise(pl.col("meta_full"))
            if without_oem_time else pl.col("meta_full"))
    normal = pl.concat_str([_s(head + ',"body":'), *body, _s(',"status":{"value":"SUCCESS"}'), meta])
    if error is not None:
        normal = (pl.when(pl.col(error).is_not_null())
                  .then(pl.concat_str([_s(head + ',"status":'), pl.col(error), pl.col("meta_retrieved_only")]))
                  .otherwise(normal))
    return pl.when(include).then(normal)


def _number_body(column: str, unit: str | None = None, unit_column: str | None = None) -> list:
    parts = [_s('{"value":'), pl.col(column)]
    if unit is not None:
        parts.append(_s(',"unit":"%s"}' % unit))
    elif unit_column is not None:
        parts += [_s(',"unit":"'), pl.col(unit_column), _s('"}')]
    else:
        parts.append(_s("}"))
    return parts


def build_state_lines(frame: pl.DataFrame) -> pl.DataFrame:
    """``prefix``, ``tail`` and ``signal_count`` of each VEHICLE_STATE line (columns as built by
    ``vehicle_state_lines``: values already as JSON text, errors as nullable status JSON)."""
    meta = [
        pl.concat_str([_s(',"meta":{"oemUpdatedAt":"'), pl.col("oem_updated_at"), _s('","retrievedAt":"'),
                       pl.col("retrieved_at"), _s('"}}')]).alias("meta_full"),
        pl.concat_str([_s(',"meta":{"retrievedAt":"'), pl.col("retrieved_at"), _s('"}}')])
        .alias("meta_retrieved_only"),
    ]
    has_battery = pl.col("has_battery")
    has_engine = pl.col("has_engine")
    slow = pl.col("slow")
    signals = [
        _signal("odometer-traveleddistance", _number_body("odometer", unit_column="odometer_unit"), pl.lit(True),
                "no_oem_time_odometer"),
        _signal("tractionbattery-stateofcharge", _number_body("soc", "percent"), has_battery, None, "soc_error"),
        _signal("tractionbattery-nominalcapacity",
                [_s('{"capacity":'), pl.col("nominal_capacity"), _s(',"unit":"kWh"}')], has_battery & slow),
        _signal("charge-ischarging", _number_body("is_charging"), has_battery),
        _signal("charge-ischargingcableconnected", _number_body("is_plugged"), has_battery),
        _signal("charge-wattage", _number_body("wattage", unit_column="wattage_unit"),
                has_battery & pl.col("reports_wattage")),
        _signal("charge-voltage", _number_body("voltage", "volts"), has_battery & pl.col("reports_voltage_amperage")),
        _signal("charge-amperage", _number_body("amperage", "amperes"),
                has_battery & pl.col("reports_voltage_amperage")),
        _signal("charge-energyadded", _number_body("energy_added", "kWh"),
                has_battery & pl.col("reports_energy_added")),
        _signal("location-preciselocation",
                [_s('{"latitude":'), pl.col("lat"), _s(',"longitude":'), pl.col("lon"),
                 _s(',"heading":'), pl.col("heading"), _s(',"direction":"'), pl.col("direction"),
                 _s('","locationType":"GPS"}')], pl.lit(True), "no_oem_time_location", "location_error"),
        _signal("wheel-tires",
                [_s('{"values":[{"row":0,"column":0,"tirePressure":'), pl.col("tire_front_left"),
                 _s('},{"row":0,"column":1,"tirePressure":'), pl.col("tire_front_right"),
                 _s('},{"row":1,"column":0,"tirePressure":'), pl.col("tire_rear_left"),
                 _s('},{"row":1,"column":1,"tirePressure":'), pl.col("tire_rear_right"),
                 _s('}],"unit":"'), pl.col("tire_unit"), _s('"}')], slow, "no_oem_time_tires", "tires_error"),
        _signal("internalcombustionengine-oillife", _number_body("oil_life", "percent"), has_engine & slow,
                "no_oem_time_oil_life"),
        _signal("internalcombustionengine-fuellevel", _number_body("fuel", "percent"), has_engine,
                "no_oem_time_fuel", "fuel_error"),
        _signal("lowvoltagebattery-stateofcharge", _number_body("low_voltage_soc", "percent"), slow,
                "no_oem_time_low_voltage_soc", "low_voltage_soc_error"),
        _signal("diagnostics-dtclist", [_s('{"values":'), pl.col("dtc_list_json"), _s("}")], slow),
    ]
    newer_includes = {
        C.RANGE: has_battery & pl.col("include_range"),
        C.LIMITS: has_battery & pl.col("include_limits"),
        C.FAST_CHARGER: has_battery & pl.col("include_fast_charger"),
        C.CHARGING_STATUS: has_battery & pl.col("charging_status").is_not_null(),
        C.LOW_VOLTAGE_STATUS: pl.col("low_voltage_status").is_not_null(),
        **{"diagnostics-" + system: pl.col("system_" + system).is_not_null() for system in C.DIAGNOSTIC_SYSTEMS},
        C.SERVICE_RECORDS: pl.col("service_body").is_not_null(),
        C.CHARGE_RECORDS: pl.col("charge_records_body").is_not_null(),
    }
    signals += [
        _signal(C.RANGE, _number_body("range_km", unit_column="range_unit"), newer_includes[C.RANGE]),
        _signal(C.LIMITS, [pl.col("limits_body")], newer_includes[C.LIMITS]),
        _signal(C.FAST_CHARGER, _number_body("fast_charger"), newer_includes[C.FAST_CHARGER]),
        _signal(C.CHARGING_STATUS, [_s('{"value":"'), pl.col("charging_status"), _s('"}')],
                newer_includes[C.CHARGING_STATUS]),
        _signal(C.LOW_VOLTAGE_STATUS, [_s('{"value":"'), pl.col("low_voltage_status"), _s('"}')],
                newer_includes[C.LOW_VOLTAGE_STATUS]),
        *(_signal("diagnostics-" + system, [_s('{"status":"'), pl.col("system_" + system), _s('"}')],
                  newer_includes["diagnostics-" + system]) for system in C.DIAGNOSTIC_SYSTEMS),
        _signal(C.SERVICE_RECORDS, [pl.col("service_body")], newer_includes[C.SERVICE_RECORDS]),
        _signal(C.CHARGE_RECORDS, [pl.col("charge_records_body")], newer_includes[C.CHARGE_RECORDS]),
    ]
    signal_count = (pl.lit(2, dtype=pl.Int32) + has_battery.cast(pl.Int32) * 3
                    + (has_battery & slow).cast(pl.Int32)
                    + (has_battery & pl.col("reports_wattage")).cast(pl.Int32)
                    + (has_battery & pl.col("reports_voltage_amperage")).cast(pl.Int32) * 2
                    + (has_battery & pl.col("reports_energy_added")).cast(pl.Int32)
                    + slow.cast(pl.Int32) * 3
                    + (has_engine & slow).cast(pl.Int32)
                    + has_engine.cast(pl.Int32)
                    + pl.sum_horizontal([include.cast(pl.Int32) for include in newer_includes.values()]))
    out = frame.with_columns(meta).with_columns(
        pl.concat_str(signals, separator=",", ignore_nulls=True).alias("signals"),
        signal_count.alias("signal_count"),
    )
    return out.select(
        pl.concat_str([_s('{"eventId":"'), pl.col("event_id"), _s('","eventType":"VEHICLE_STATE","data":{'),
                       pl.col("vehicle_fragment"), _s(',"signals":['), pl.col("signals"), _s(']},"triggers":['),
                       pl.col("triggers_json"), _s('],"meta":{"version":"4.0","deliveryId":"')]).alias("prefix"),
        pl.concat_str([pl.col("webhook_tail"), _s(',"signalCount":'),
                       pl.col("signal_count").cast(pl.String), _s("}}")]).alias("tail"),
        pl.col("signal_count"),
    )


def iso_ms(ms: pl.Expr) -> pl.Expr:
    return ms.cast(pl.Datetime("ms")).dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")


def _meta(formats: PayloadFormats, webhook: int, delivery_id: str, delivered_ms: int, in_seconds: bool) -> dict:
    return {"version": "4.0", "deliveryId": delivery_id,
            "deliveredAt": delivered_ms // 1000 if in_seconds else delivered_ms,
            "webhookId": str(formats.webhook_ids[webhook]), "webhookName": C.WEBHOOKS[webhook][0], "mode": "TEST"}


def vehicle_error_line(fleet, formats: PayloadFormats, v: int, event_id: str, delivery_id: str,
                       delivered_ms: int, error: tuple, state: str) -> str:
    error_type, code, description, resolution = error
    webhook = int(fleet.webhook_index[v])
    return dumps({"eventId": event_id, "eventType": "VEHICLE_ERROR",
                  "data": {"user": {"id": str(fleet.user_id[v])}, "vehicle": _vehicle(fleet, v),
                           "errors": [{"type": error_type, "code": code, "state": state,
                                       "description": description, "resolution": {"type": resolution}}]},
                  "meta": _meta(formats, webhook, delivery_id, delivered_ms,
                                formats.delivered_at_in_seconds[v])})


def verify_line(formats: PayloadFormats, webhook: int, event_id: str, delivery_id: str, delivered_ms: int,
                challenge: str) -> str:
    return dumps({"eventId": event_id, "eventType": "VERIFY", "data": {"challenge": challenge},
                  "meta": _meta(formats, webhook, delivery_id, delivered_ms, C.WEBHOOKS[webhook][2])})
