"""Robust trend fitting on one series (Theil–Sen: the median of the pairwise slopes, which
sensor noise and a stray reading cannot move), and the resets that start a new segment."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_FIT_POINTS = 400  # Theil–Sen is quadratic in the points: longer series are thinned evenly


@dataclass(frozen=True)
class Trend:
    slope: float       # per unit of x
    level: float       # fitted value at x_end
    readings: int      # points the fit rests on


def theil_sen(x: np.ndarray, y: np.ndarray, x_end: float) -> Trend | None:
    """Theil–Sen line through (x, y): slope the median of the pairwise slopes, level at
    `x_end` the median of the points moved along that slope to `x_end`. None when x does
    not vary."""
    n = len(x)
    if n > MAX_FIT_POINTS:
        keep = np.linspace(0, n - 1, MAX_FIT_POINTS).round().astype(int)
        x, y = x[keep], y[keep]
    i, j = np.triu_indices(len(x), k=1)
    dx = x[j] - x[i]
    usable = dx > 0
    if not usable.any():
        return None
    slope = float(np.median((y[j] - y[i])[usable] / dx[usable]))
    level = float(np.median(y + slope * (x_end - x)))
    return Trend(slope=slope, level=level, readings=n)


def segment_starts(values: np.ndarray, jump: float, lookback: int = 3) -> list[int]:
    """Indices where a new segment starts: 0, and every reading that rises more than `jump`
    above the median of the few readings before it (an oil change, a re-inflation). The
    median keeps one noisy low reading from looking like the floor a jump starts from."""
    # Only a reading that rises more than `jump` above one of the few before it can start a
    # segment (the median is above the minimum): check those alone.
    candidates = np.zeros(len(values), dtype=bool)
    for lag in range(1, lookback + 1):
        candidates[lag:] |= values[lag:] - values[:-lag] > jump
    starts = [0]
    for k in np.nonzero(candidates)[0]:
        before = values[max(starts[-1], k - lookback):k]
        if len(before) and values[k] - float(np.median(before)) > jump:
            starts.append(int(k))
    return starts


def recent_trend(days: np.ndarray, values: np.ndarray, window_days: float, min_readings: int) -> Trend | None:
    """Theil–Sen trend (per day) of the last `window_days` of a segment, with its level at
    the segment's last reading; None with fewer than `min_readings` readings or less than a
    day between the first and the last."""
    if len(days) == 0:
        return None
    recent = days >= days[-1] - window_days
    x, y = days[recent], values[recent]
    if len(x) < min_readings or x[-1] - x[0] < 1.0:
        return None
    return theil_sen(x, y, float(x[-1]))
