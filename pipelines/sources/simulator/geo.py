"""Small geodesy helpers (scalar and numpy)."""
from __future__ import annotations

import math

import numpy as np

KM_PER_DEG_LAT = 111.32
COMPASS = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")


def offset(lat: float, lon: float, km: float, bearing_deg: float) -> tuple[float, float]:
    b = math.radians(bearing_deg)
    dlat = km * math.cos(b) / KM_PER_DEG_LAT
    dlon = km * math.sin(b) / (KM_PER_DEG_LAT * math.cos(math.radians(lat)))
    return lat + dlat, lon + dlon


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Equirectangular approximation, fine at city scale."""
    x = (lon2 - lon1) * math.cos(math.radians((lat1 + lat2) / 2)) * KM_PER_DEG_LAT
    y = (lat2 - lat1) * KM_PER_DEG_LAT
    return math.hypot(x, y)


def bearing(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    x = (lon2 - lon1) * math.cos(math.radians((lat1 + lat2) / 2))
    y = lat2 - lat1
    if x == 0 and y == 0:
        return 0.0
    return math.degrees(math.atan2(x, y)) % 360.0


def compass(heading: np.ndarray) -> np.ndarray:
    idx = (np.floor((np.asarray(heading) % 360.0) / 45.0 + 0.5).astype(np.int64)) % 8
    return np.array(COMPASS)[idx]
