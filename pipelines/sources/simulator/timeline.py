"""One day of the whole fleet's true state, as one sorted keyframe table.

Every vehicle's keyframes sit in their own block of a single time axis (vehicle index times
``VEHICLE_BLOCK_S`` plus seconds since midnight), so one ``np.interp`` or ``np.searchsorted``
answers a question for all readings of all vehicles at once.
"""
from __future__ import annotations

import numpy as np

from .activity import AT, KEYFRAME_COLUMNS, ODOMETER

# Wider than any day's keyframes (they reach a few seconds past midnight), so blocks never overlap.
VEHICLE_BLOCK_S = 1e8


class DayTimeline:
    """Piecewise-linear lookups into the keyframes of every vehicle for one day."""

    def __init__(self, keyframes_by_vehicle: list, day_start: float):
        keyframe_counts = np.fromiter((len(k) for k in keyframes_by_vehicle), dtype=np.int64,
                                      count=len(keyframes_by_vehicle))
        self.keyframes = np.array([keyframe for keyframes in keyframes_by_vehicle for keyframe in keyframes],
                                  dtype=np.float64).reshape(-1, KEYFRAME_COLUMNS)
        keyframe_vehicle = np.repeat(np.arange(len(keyframes_by_vehicle), dtype=np.float64), keyframe_counts)
        self.axis = keyframe_vehicle * VEHICLE_BLOCK_S + (self.keyframes[:, AT] - day_start)
        self.day_start = day_start

    def position(self, vehicle: np.ndarray, at: np.ndarray) -> np.ndarray:
        """Where (vehicle, time) pairs fall on the shared time axis."""
        return (np.asarray(vehicle, dtype=np.float64) * VEHICLE_BLOCK_S
                + (np.asarray(at, dtype=np.float64) - self.day_start))

    def interpolate(self, position: np.ndarray, column: int) -> np.ndarray:
        """A linear channel (odometer, SoC, ...) between keyframes."""
        return np.interp(position, self.axis, self.keyframes[:, column])

    def keyframe_before(self, position: np.ndarray) -> np.ndarray:
        """Index of the keyframe in force: step channels (mode, power, heading) hold its value."""
        return np.searchsorted(self.axis, position, side="right") - 1

    def odometer_at(self, vehicle, at) -> np.ndarray:
        return self.interpolate(self.position(vehicle, at), ODOMETER)

    def first_reach(self, vehicle: int, target_odometer_km: float) -> float:
        """First time ``vehicle`` reaches ``target_odometer_km`` within this day's keyframes."""
        lo = np.searchsorted(self.axis, vehicle * VEHICLE_BLOCK_S - VEHICLE_BLOCK_S / 2)
        hi = np.searchsorted(self.axis, vehicle * VEHICLE_BLOCK_S + VEHICLE_BLOCK_S / 2)
        odometer = self.keyframes[lo:hi, ODOMETER]
        at = self.keyframes[lo:hi, AT]
        i = int(np.searchsorted(odometer, target_odometer_km, side="left"))
        if i <= 0:
            return float(at[0])
        if i >= len(odometer):
            return float(at[-1])
        odometer_before, odometer_after = odometer[i - 1], odometer[i]
        share = (0.0 if odometer_after <= odometer_before
                 else (target_odometer_km - odometer_before) / (odometer_after - odometer_before))
        return float(at[i - 1] + share * (at[i] - at[i - 1]))
