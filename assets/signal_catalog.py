"""What Fleetlake knows about Smartcar's v3 signals: which body fields carry the value, which
canonical metric each becomes, the units each may arrive in, and the physical range of each.

Canonical metrics are SI-metric and say their unit in their name (`odometer_km`,
`tire_pressure_kpa`). Everything else in the readings layer is driven by these tables.
"""

from __future__ import annotations

from dataclasses import dataclass

# Factor that converts a value in the given unit (lower-cased, as it came) to the canonical unit.
# Smartcar's own pages spell some units their way (`kWhr` on the nominal-capacity page,
# `ampere`): every documented spelling is here.
UNIT_FACTORS: dict[str, dict[str, float]] = {
    "length": {"km": 1.0, "kilometer": 1.0, "kilometers": 1.0, "kilometres": 1.0, "mi": 1.609344, "mile": 1.609344,
               "miles": 1.609344, "m": 0.001, "meters": 0.001, "metres": 0.001},
    "percent": {"percent": 1.0, "percentage": 1.0, "%": 1.0, "pct": 1.0},
    "energy": {"kwh": 1.0, "kwhr": 1.0, "kwhrs": 1.0, "kilowatthours": 1.0, "kilowatt_hours": 1.0,
               "kilowatt-hours": 1.0, "wh": 0.001, "whr": 0.001, "watthours": 0.001, "watt_hours": 0.001},
    "power": {"kw": 1.0, "kilowatt": 1.0, "kilowatts": 1.0, "w": 0.001, "watt": 0.001, "watts": 0.001},
    "voltage": {"v": 1.0, "volt": 1.0, "volts": 1.0},
    "current": {"a": 1.0, "amp": 1.0, "amps": 1.0, "ampere": 1.0, "amperes": 1.0},
    "pressure": {"kpa": 1.0, "kilopascal": 1.0, "kilopascals": 1.0, "bar": 100.0, "psi": 6.894757293168361},
}

# Marks a `source_unit` that the body did not carry: the signal's documented unit was assumed.
ASSUMED = " (assumed)"

# Tyre positions by (row, column): row 0 is the front axle, column 0 the left side.
TIRE_POSITIONS: dict[tuple[int, int], str] = {
    (0, 0): "front_left", (0, 1): "front_right", (1, 0): "rear_left", (1, 1): "rear_right",
}


@dataclass(frozen=True)
class SignalSpec:
    code: str
    shape: str            # "number" | "boolean" | "location" | "tires" | "dtc" | "level" | "word" | "limits" | ...
    metric: str           # canonical metric (for "location": the latitude metric)
    field: str = "value"  # body field that carries a number/boolean/level
    quantity: str | None = None
    low: float | None = None
    high: float | None = None
    # another body field that carries the same value where the first is absent (documented
    # bodies disagree: state of charge is `{unit, value}` on one page, `{percentage}` on another)
    alt_field: str | None = None
    # the unit the signal is documented in, applied when the body carries none
    default_unit: str | None = None
    # "level": the documented values, in order of severity (the reading's value is the index)
    levels: tuple[str, ...] = ()


# Every system whose status the diagnostics page documents (signal `diagnostics-<system>`).
DIAGNOSTIC_SYSTEMS = (
    "abs", "activesafety", "airbag", "brakefluid", "driverassistance", "evbatteryconditioning", "evcharging",
    "evdriveunit", "evhvbattery", "emissions", "lighting", "mil", "oillife", "oilpressure", "oiltemperature",
    "telematics", "tirepressure", "tirepressuremonitoring", "transmission", "washerfluid", "waterinfuel",
)
SYSTEM_LEVELS = ("OK", "ALERT")

SIGNALS: dict[str, SignalSpec] = {
    s.code: s
    for s in [
        SignalSpec("odometer-traveleddistance", "number", "odometer_km", quantity="length", low=0, high=2_000_000),
        SignalSpec("tractionbattery-stateofcharge", "number", "soc_pct", quantity="percent", low=0, high=100,
                   alt_field="percentage", default_unit="percent"),
        # the capacity page shows `kWhr`, and an example with no unit at all
        SignalSpec("tractionbattery-nominalcapacity", "number", "battery_capacity_kwh", field="capacity",
                   quantity="energy", low=1, high=500, default_unit="kWh"),
        SignalSpec("tractionbattery-range", "number", "range_km", quantity="length", low=0, high=2_000),
        SignalSpec("charge-ischarging", "boolean", "is_charging"),
        SignalSpec("charge-ischargingcableconnected", "boolean", "is_plugged_in"),
        SignalSpec("charge-wattage", "number", "charge_power_kw", quantity="power", low=0, high=1_000),
        SignalSpec("charge-voltage", "number", "charge_voltage_v", quantity="voltage", low=0, high=1_500),
        SignalSpec("charge-amperage", "number", "charge_current_a", quantity="current", low=0, high=1_000),
        SignalSpec("charge-energyadded", "number", "energy_added_kwh", quantity="energy", low=0, high=500),
        SignalSpec("location-preciselocation", "location", "latitude_deg"),
        SignalSpec("charge-isfastchargerpresent", "boolean", "is_fast_charger"),
        # the charge page lists CHARGING, NOT_CHARGING, FULLY_CHARGED; makes send other words, so
        # every word is kept as sent (upper-cased); the charging marts read AC or DC from a word
        # that names one, and FULLY_CHARGED as a charge that reached its limit
        SignalSpec("charge-detailedchargingstatus", "word", "charging_status"),
        SignalSpec("charge-chargelimits", "limits", "charge_limit_pct", field="activeLimit", quantity="percent",
                   low=0, high=100, default_unit="percent"),
        # the wheel page documents no unit field: pressures are in kPa
        SignalSpec("wheel-tires", "tires", "tire_pressure_kpa", quantity="pressure", low=0, high=1_000,
                   default_unit="kPa"),
        SignalSpec("internalcombustionengine-oillife", "number", "oil_life_pct", quantity="percent", low=0, high=100),
        SignalSpec("internalcombustionengine-fuellevel", "number", "fuel_level_pct", quantity="percent", low=0, high=100),
        SignalSpec("lowvoltagebattery-stateofcharge", "number", "lv_battery_soc_pct", quantity="percent", low=0,
                   high=100, default_unit="percent"),
        SignalSpec("lowvoltagebattery-status", "level", "lv_battery_status", levels=("GOOD", "WARN", "BAD")),
        SignalSpec("diagnostics-dtclist", "dtc", "dtc_count"),
        # the service page: {values: [{id, time, odometer, tasks, details, cost}]}; the odometer's
        # unit is not documented (the service-history endpoint gives kilometres)
        SignalSpec("service-records", "services", "service_odometer_km", quantity="length", low=0, high=2_000_000,
                   default_unit="km"),
        # the charge page's records: {values: [{id, cost, startTime, endTime, location, energyAdded,
        # connectorType, isPublicCharger, startStateOfCharge, endStateOfCharge}]}, energy in kWh
        # (no unit field); the OEM's own sessions. Location and cost are left in the raw body.
        SignalSpec("charge-chargerecords", "charge_records", "charge_record_energy_kwh", field="energyAdded",
                   quantity="energy", low=0, high=500, default_unit="kWh"),
        # the diagnostics page's system statuses: {status: OK | ALERT, description}; the reading's
        # component is the system (the code's name), its value the index of the status word
        *(SignalSpec(f"diagnostics-{system}", "system", "system_status", field="status", levels=SYSTEM_LEVELS)
          for system in DIAGNOSTIC_SYSTEMS),
    ]
}

# Every metric a reading can carry, with its canonical unit (the GX suite checks against this).
METRIC_UNITS: dict[str, str] = {
    "odometer_km": "km", "soc_pct": "percent", "battery_capacity_kwh": "kWh", "is_charging": "boolean",
    "is_plugged_in": "boolean", "charge_power_kw": "kW", "charge_voltage_v": "V", "charge_current_a": "A",
    "energy_added_kwh": "kWh", "latitude_deg": "degree", "longitude_deg": "degree", "heading_deg": "degree",
    "tire_pressure_kpa": "kPa", "oil_life_pct": "percent", "fuel_level_pct": "percent",
    "lv_battery_soc_pct": "percent", "dtc_count": "count", "dtc_code": "code",
    "range_km": "km", "is_fast_charger": "boolean", "charge_limit_pct": "percent",
    "lv_battery_status": "level",  # index into the signal's levels; the level's name is the component
    "system_status": "level",  # a diagnostics system (component) and its status: 0 OK, 1 ALERT
    "charging_status": "text",  # the car's own word for its charging state (component); value null
    # a service record: `service_at` (text: the record's id as component, its time as noted_at)
    # and, where the record has one, the odometer at the service (component and noted_at alike)
    "service_at": "text", "service_odometer_km": "km", "service_record_count": "count",
    # a charge record of the car's own (`charge-chargerecords`), component: the record's id (its
    # start time when it has none): when it started and ended (text metrics, the time as
    # noted_at), the energy it added and the state of charge at either end, where it says
    "charge_record_started_at": "text", "charge_record_ended_at": "text", "charge_record_energy_kwh": "kWh",
    "charge_record_soc_start_pct": "percent", "charge_record_soc_end_pct": "percent", "charge_record_count": "count",
    # text the payload carries beside a value, kept for analysts: the value is null, the text
    # is the component (nominal capacity's `source`, location's `locationType`)
    "battery_capacity_source": "text", "location_type": "text",
}

# Text fields kept from a body: (signal code, body field) → metric.
BODY_TEXTS: dict[tuple[str, str], str] = {
    ("tractionbattery-nominalcapacity", "source"): "battery_capacity_source",
    ("location-preciselocation", "locationType"): "location_type",
}
TEXT_METRICS = ("dtc_code", "charging_status", "service_at", "charge_record_started_at", "charge_record_ended_at",
                *BODY_TEXTS.values())

# Physical range of every numeric metric, for the quality suite (normalization quarantines
# anything outside it, so a failure there means a bug, not bad input).
METRIC_RANGES: dict[str, tuple[float, float]] = {
    **{s.metric: (s.low, s.high) for s in SIGNALS.values() if s.low is not None},
    "is_charging": (0, 1), "is_plugged_in": (0, 1), "is_fast_charger": (0, 1),
    **{s.metric: (0, len(s.levels) - 1) for s in SIGNALS.values() if s.levels},
    "latitude_deg": (-90, 90), "longitude_deg": (-180, 180), "heading_deg": (0, 360),
    "dtc_count": (0, 1_000), "service_record_count": (0, 100_000),
    "charge_record_soc_start_pct": (0, 100), "charge_record_soc_end_pct": (0, 100), "charge_record_count": (0, 100_000),
}
