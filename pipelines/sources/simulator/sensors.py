"""What the car reports for its true state: sensor noise, rounding and each make's units."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import catalog as C
from .fleet import Fleet
from .readings import Readings, TrueState
from .wear import low_voltage_soc, tire_pressure

# above this a session is DC fast charging, where the voltage follows the pack, not the grid
DC_MIN_KW = 22.0
METRES_PER_DEGREE = 111320.0


def grid_voltage(fleet: Fleet, rng: np.random.Generator) -> np.ndarray:
    """Each vehicle's home grid voltage: 240 V split phase in the US, 230 V in Europe."""
    us = np.array([C.METROS[metro][0] == "bay_area" for metro in fleet.metro_index])
    return np.where(us, 240.0, 230.0) * rng.uniform(0.985, 1.015, fleet.size)


@dataclass
class ReportedValues:
    """Rounded numbers as they appear in the payload (the odometer comes from the faults stage)."""

    soc_pct: np.ndarray
    wattage: np.ndarray  # in the make's wattage unit
    voltage: np.ndarray
    amperage: np.ndarray
    energy_added_kwh: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    heading: np.ndarray
    tire_unit: np.ndarray
    tires: np.ndarray  # (readings, 4) in tire_unit: FL, FR, RL, RR
    oil_life_pct: np.ndarray
    fuel_pct: np.ndarray
    low_voltage_soc_pct: np.ndarray


def report_values(fleet: Fleet, readings: Readings, state: TrueState, oil_life_pct: np.ndarray,
                  home_grid_voltage: np.ndarray, rng: np.random.Generator) -> ReportedValues:
    vehicle, count = readings.vehicle, len(readings)
    # The draws below are taken in this order; changing it changes every landing file.
    power_kw = np.where(state.charging, state.power_kw * rng.uniform(0.99, 1.01, count), 0.0)
    wattage_in_kw = np.array([unit == "kW" for unit in fleet.wattage_unit])[vehicle]
    wattage = np.where(wattage_in_kw, np.round(power_kw, 2), np.round(power_kw * 1000.0, 0))
    dc = state.charging & (state.power_kw > DC_MIN_KW)
    pack_voltage = 340.0 + 0.9 * state.soc_pct + rng.uniform(-2, 2, count)
    mains_voltage = home_grid_voltage[vehicle] * rng.uniform(0.995, 1.005, count)
    voltage = np.where(dc, pack_voltage, np.where(state.plugged, mains_voltage, 0.0))
    amperage = np.where(state.charging & (voltage > 0), power_kw * 1000.0 / np.maximum(voltage, 1.0), 0.0)
    # GPS noise: 5 m while driving or charging, 3 m while parked
    noise_deg = np.where(state.awake, 5.0, 3.0) / METRES_PER_DEGREE
    lat = state.lat + rng.normal(0, 1, count) * noise_deg
    lon = state.lon + rng.normal(0, 1, count) * noise_deg / np.cos(np.radians(state.lat))
    heading = np.where(state.driving, (state.heading + rng.uniform(-8, 8, count)) % 360.0, state.heading)
    tires_kpa = tire_pressure(fleet, vehicle, readings.at) + rng.uniform(-1.5, 1.5, (count, 4))
    tire_unit = np.array(fleet.tire_unit, dtype=object)[vehicle]
    tires = np.where((tire_unit == "bar")[:, None], np.round(tires_kpa / C.KPA_PER_BAR, 3),
                     np.where((tire_unit == "psi")[:, None], np.round(tires_kpa / C.KPA_PER_PSI, 1),
                              np.round(tires_kpa, 1)))
    low_voltage = np.clip(low_voltage_soc(fleet, vehicle, readings.at) + rng.uniform(-1.5, 1.5, count), 0, 100)
    return ReportedValues(
        soc_pct=np.round(state.soc_pct, 1),
        wattage=wattage,
        voltage=np.round(voltage, 1),
        amperage=np.round(amperage, 1),
        energy_added_kwh=np.round(state.energy_added_kwh, 2),
        lat=np.round(lat, 6),
        lon=np.round(lon, 6),
        heading=np.round(heading, 1),
        tire_unit=tire_unit,
        tires=tires,
        oil_life_pct=np.round(oil_life_pct, 1),
        fuel_pct=np.round(state.fuel_pct, 1),
        low_voltage_soc_pct=np.round(low_voltage, 1),
    )


def report_odometer(fleet: Fleet, readings: Readings, reported_km: np.ndarray,
                    in_miles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The odometer value and its unit spelling, in the unit the car reports in."""
    value = np.round(np.where(in_miles, reported_km / C.KM_PER_MILE, reported_km), 1)
    unit = np.where(in_miles, np.array(fleet.mile_spelling, dtype=object)[readings.vehicle],
                    np.array(fleet.km_spelling, dtype=object)[readings.vehicle])
    return value, unit
