"""Static reference data: vehicle models, make behaviour, signals, places, codes."""
from __future__ import annotations

from dataclasses import dataclass

BEV, PHEV, ICE = 0, 1, 2
POWERTRAINS = ("BEV", "PHEV", "ICE")


@dataclass(frozen=True)
class Model:
    make: str
    model: str
    powertrain: int
    weight: float  # share within its powertrain
    nominal_kwh: float | None
    consumption_kwh_per_km: float | None  # typical, per-vehicle spread added
    dc_max_kw: float | None  # None: no DC fast charging
    ac_max_kw: float | None
    tank_l: float | None
    fuel_l_per_100km: float | None
    years: tuple[int, int]
    wmi: str
    vds: str


MODELS: tuple[Model, ...] = (
    # BEV
    Model("TESLA", "Model 3", BEV, 0.22, 75.0, 0.15, 170.0, 11.0, None, None, (2019, 2024), "5YJ", "3E1EB"),
    Model("TESLA", "Model Y", BEV, 0.22, 75.0, 0.17, 170.0, 11.0, None, None, (2020, 2025), "7SA", "YGDEE"),
    Model("NISSAN", "Leaf", BEV, 0.10, 40.0, 0.17, 50.0, 6.6, None, None, (2018, 2023), "1N4", "AZ1CP"),
    Model("CHEVROLET", "Bolt EV", BEV, 0.10, 65.0, 0.16, 55.0, 11.0, None, None, (2019, 2023), "1G1", "FY6S0"),
    Model("VOLKSWAGEN", "ID.4", BEV, 0.12, 77.0, 0.19, 135.0, 11.0, None, None, (2021, 2025), "WVG", "DMPE2"),
    Model("HYUNDAI", "Ioniq 5", BEV, 0.12, 77.4, 0.19, 220.0, 11.0, None, None, (2022, 2025), "KM8", "KRDAF"),
    Model("FORD", "Mustang Mach-E", BEV, 0.12, 91.0, 0.21, 150.0, 11.0, None, None, (2021, 2025), "3FM", "TK3SU"),
    # PHEV (no DC fast charging)
    Model("TOYOTA", "RAV4 Prime", PHEV, 0.40, 18.1, 0.22, None, 6.6, 55.0, 6.0, (2021, 2025), "JTM", "EB3FV"),
    Model("MITSUBISHI", "Outlander PHEV", PHEV, 0.30, 20.0, 0.24, None, 3.7, 56.0, 7.5, (2019, 2024), "JA4", "T5AA3"),
    Model("VOLVO", "XC60 Recharge", PHEV, 0.30, 18.8, 0.23, None, 3.7, 71.0, 7.0, (2020, 2025), "YV4", "BR0DL"),
    # ICE
    Model("TOYOTA", "Camry", ICE, 0.30, None, None, None, None, 60.0, 7.0, (2018, 2025), "4T1", "B11HK"),
    Model("FORD", "F-150", ICE, 0.25, None, None, None, None, 98.0, 12.5, (2018, 2025), "1FT", "FW1E5"),
    Model("HONDA", "Civic", ICE, 0.25, None, None, None, None, 47.0, 6.5, (2018, 2025), "2HG", "FC2F5"),
    Model("VOLKSWAGEN", "Golf", ICE, 0.20, None, None, None, None, 50.0, 6.0, (2018, 2024), "WVW", "ZZZAU"),
)


@dataclass(frozen=True)
class MakeProfile:
    """How a make's connected service reports signals (the pipeline must cope with all)."""

    energy_added: bool
    wattage_unit: str | None  # None: no charge-wattage signal
    voltage_amperage: bool
    tire_unit: str  # "kPa" | "bar" | "psi"
    km_spelling: str
    mi_spelling: str
    no_oem_time: frozenset  # signal codes delivered without meta.oemUpdatedAt
    # the newer signals (NEWER_SIGNALS) the make's connected service sends, where the car has
    # what they describe (a traction battery, a DC inlet, an engine, a matching trouble code)
    newer: frozenset = frozenset()


RANGE, LIMITS, FAST_CHARGER, CHARGING_STATUS = ("tractionbattery-range", "charge-chargelimits",
                                                "charge-isfastchargerpresent", "charge-detailedchargingstatus")
LOW_VOLTAGE_STATUS, SYSTEM_STATUS, SERVICE_RECORDS = "lowvoltagebattery-status", "diagnostics-*", "service-records"
CHARGE_RECORDS = "charge-chargerecords"
NEWER_SIGNALS = (RANGE, LIMITS, FAST_CHARGER, CHARGING_STATUS, LOW_VOLTAGE_STATUS, SYSTEM_STATUS, SERVICE_RECORDS,
                 CHARGE_RECORDS)
# A charge record is sent with the slow readings for this long after its session ended.
CHARGE_RECORD_DAYS = 7


MAKES: dict[str, MakeProfile] = {
    "TESLA": MakeProfile(True, "kW", True, "bar", "km", "mi", frozenset(),
                    frozenset({RANGE, LIMITS, FAST_CHARGER, CHARGING_STATUS, LOW_VOLTAGE_STATUS})),
    "NISSAN": MakeProfile(False, None, False, "psi", "km", "mi",
                          frozenset({"location-preciselocation", "wheel-tires"}),
                    frozenset({RANGE, CHARGING_STATUS})),
    "CHEVROLET": MakeProfile(True, "kW", True, "kPa", "kilometers", "miles", frozenset(),
                    frozenset({RANGE, LIMITS, FAST_CHARGER, CHARGING_STATUS, LOW_VOLTAGE_STATUS, SYSTEM_STATUS})),
    "VOLKSWAGEN": MakeProfile(False, "watts", False, "bar", "km", "mi",
                              frozenset({"lowvoltagebattery-stateofcharge"}),
                    frozenset({RANGE, LIMITS, CHARGING_STATUS, SYSTEM_STATUS, SERVICE_RECORDS, CHARGE_RECORDS})),
    "HYUNDAI": MakeProfile(True, None, False, "psi", "km", "mi", frozenset(),
                    frozenset({RANGE, LIMITS, FAST_CHARGER, LOW_VOLTAGE_STATUS})),
    "FORD": MakeProfile(True, "W", True, "psi", "kilometers", "miles", frozenset(),
                    frozenset({RANGE, LIMITS, FAST_CHARGER, CHARGING_STATUS, LOW_VOLTAGE_STATUS, SYSTEM_STATUS,
                               SERVICE_RECORDS})),
    "TOYOTA": MakeProfile(False, None, False, "kPa", "km", "mi",
                          frozenset({"wheel-tires", "internalcombustionengine-oillife"}),
                    frozenset({RANGE, CHARGING_STATUS, LOW_VOLTAGE_STATUS, SYSTEM_STATUS, SERVICE_RECORDS})),
    "MITSUBISHI": MakeProfile(False, None, False, "kPa", "km", "mi",
                              frozenset({"odometer-traveleddistance", "location-preciselocation",
                                         "internalcombustionengine-fuellevel"})),
    "VOLVO": MakeProfile(True, "W", False, "bar", "km", "mi", frozenset(),
                    frozenset({RANGE, LIMITS, CHARGING_STATUS, SERVICE_RECORDS})),
    "HONDA": MakeProfile(False, None, False, "psi", "km", "mi", frozenset(),
                    frozenset({LOW_VOLTAGE_STATUS, SYSTEM_STATUS, SERVICE_RECORDS})),
}

# code -> (name, group)
SIGNALS: dict[str, tuple[str, str]] = {
    "odometer-traveleddistance": ("TraveledDistance", "Odometer"),
    "tractionbattery-stateofcharge": ("StateOfCharge", "TractionBattery"),
    "tractionbattery-nominalcapacity": ("NominalCapacity", "TractionBattery"),
    "charge-ischarging": ("IsCharging", "Charge"),
    "charge-ischargingcableconnected": ("IsChargingCableConnected", "Charge"),
    "charge-wattage": ("Wattage", "Charge"),
    "charge-voltage": ("Voltage", "Charge"),
    "charge-amperage": ("Amperage", "Charge"),
    "charge-energyadded": ("EnergyAdded", "Charge"),
    "location-preciselocation": ("PreciseLocation", "Location"),
    "wheel-tires": ("Tires", "Wheel"),
    "internalcombustionengine-oillife": ("OilLife", "InternalCombustionEngine"),
    "internalcombustionengine-fuellevel": ("FuelLevel", "InternalCombustionEngine"),
    "lowvoltagebattery-stateofcharge": ("StateOfCharge", "LowVoltageBattery"),
    "diagnostics-dtclist": ("DTCList", "Diagnostics"),
    "tractionbattery-range": ("Range", "TractionBattery"),
    "charge-chargelimits": ("ChargeLimits", "Charge"),
    "charge-isfastchargerpresent": ("IsFastChargerPresent", "Charge"),
    "charge-detailedchargingstatus": ("DetailedChargingStatus", "Charge"),
    "lowvoltagebattery-status": ("Status", "LowVoltageBattery"),
    "service-records": ("ServiceRecords", "Service"),
    "charge-chargerecords": ("ChargeRecords", "Charge"),
    **{"diagnostics-" + system: (name, "Diagnostics") for system, name in (
        ("mil", "MIL"), ("emissions", "Emissions"), ("evhvbattery", "EVHVBattery"), ("abs", "ABS"),
        ("airbag", "Airbag"))},
}

# Metro areas: (name, lat, lon, share of fleet, share of odometers in miles)
METROS = (
    ("bay_area", 37.55, -122.05, 0.35, 0.40),
    ("amsterdam", 52.36, 4.90, 0.35, 0.02),
    ("munich", 48.14, 11.57, 0.30, 0.02),
)
PUBLIC_STATIONS_PER_METRO = 6
PUBLIC_STATION_KW = (50.0, 150.0, 150.0, 50.0, 150.0, 120.0)

DTC_CODES = (
    ("P0420", "Catalyst system efficiency below threshold"),
    ("P0300", "Random/multiple cylinder misfire detected"),
    ("P0171", "System too lean (bank 1)"),
    ("P0455", "Evaporative emission system leak detected (large leak)"),
    ("P0128", "Coolant thermostat below regulating temperature"),
    ("P0A80", "Replace hybrid battery pack"),
    ("C0035", "Left front wheel speed sensor circuit"),
    ("C1201", "Engine control system malfunction"),
    ("B1000", "ECU malfunction"),
    ("B0028", "Right side airbag deployment control"),
    ("U0100", "Lost communication with ECM/PCM"),
    ("U0121", "Lost communication with ABS control module"),
)
# The diagnostics systems (signal ``diagnostics-<system>``) a trouble code puts in ALERT while
# it is active; codes not listed raise none of the systems the simulator reports.
DTC_SYSTEMS = {
    "P0420": ("mil", "emissions"), "P0300": ("mil",), "P0171": ("mil",), "P0455": ("mil", "emissions"),
    "P0128": ("mil",), "P0A80": ("evhvbattery",), "C0035": ("abs",), "C1201": ("mil",), "B0028": ("airbag",),
}
DIAGNOSTIC_SYSTEMS = ("mil", "emissions", "evhvbattery", "abs", "airbag")

# 12 V battery status from its true state of charge: WARN below the first, BAD below the second
LOW_VOLTAGE_WARN_BELOW_PCT = 65.0
LOW_VOLTAGE_BAD_BELOW_PCT = 50.0

# Vehicle-level errors (VEHICLE_ERROR events): (type, code, description, resolution type)
VEHICLE_ERRORS = (
    ("CONNECTED_SERVICES_ACCOUNT", "SUBSCRIPTION",
     "The vehicle's connected services subscription is inactive or expired.", "CONTACT_SUPPORT"),
    ("CONNECTED_SERVICES_ACCOUNT", "ACCOUNT_ISSUE",
     "Action required in the owner's connected services account.", "CONTACT_SUPPORT"),
    ("CONNECTED_SERVICES_ACCOUNT", "AUTHENTICATION_FAILED",
     "Smartcar could not authenticate with the connected services account.", "REAUTHENTICATE"),
    ("VEHICLE_STATE", "ASLEEP",
     "The vehicle is in a sleep state and temporarily unable to perform the request.", "RETRY_LATER"),
    ("VEHICLE_STATE", "REMOTE_ACCESS_DISABLED",
     "Remote access has been disabled in the vehicle.", "CONTACT_SUPPORT"),
    ("VEHICLE_STATE", "UNREACHABLE",
     "The vehicle was unable to perform the request because it is unreachable.", "RETRY_LATER"),
    ("COMPATIBILITY", "SMARTCAR_NOT_CAPABLE",
     "Smartcar does not support this feature for this vehicle.", "CONTACT_SUPPORT"),
    ("PERMISSION", "PERMISSION_REVOKED",
     "The vehicle owner revoked a permission the application needs.", "REAUTHENTICATE"),
)

REVOKED_DESCRIPTION = "The vehicle owner revoked access to this signal."
TRANSIENT_ERROR = ("UPSTREAM", "NO_RESPONSE", "The vehicle did not respond to the request in time.")

WEBHOOKS = (
    # name, share of vehicles, deliveredAt in seconds?, triggers as plain strings?
    ("fleetlake-sim", 0.70, False, False),
    ("fleetlake-sim-legacy", 0.15, True, False),
    ("fleetlake-sim-compact", 0.15, False, True),
)

KM_PER_MILE = 1.609344
KPA_PER_PSI = 6.894757293168361
KPA_PER_BAR = 100.0
