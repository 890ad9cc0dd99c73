"""Distance from the odometer alone, robust to what real odometers report.

Per vehicle, in reading-time order:

- a SPIKE is a lone reading that the readings around it contradict (the step to it is
  implausible, the step past it is plausible): it counts for nothing;
- a ROLLBACK is a sustained decrease (more than `ROLLBACK_KM`): nothing is credited for it
  and counting resumes from the lower value, so distance is the sum of the increases on
  either side;
- IMPLAUSIBLE_SPEED is an increase faster than a car can drive between two readings: it is
  not credited (the period needs review), and counting resumes from the new value;
- a GAP is more than 72 hours without a reading: flagged, and the distance driven across it
  still counts when the increase is plausible.

Small decreases (rounding, unit conversion) are not rollbacks: credit is the rise of the
high-water mark, so jitter is never counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

MAX_SPEED_KMH = 250.0   # faster than any car averages between two readings
TOLERANCE_KM = 1.0      # odometer resolution and conversion rounding
ROLLBACK_KM = 1.0       # a decrease beyond the tolerance is a rollback
GAP_HOURS = 72.0

ASSESSED_SCHEMA = {
    "vehicle_id": pl.String, "reading_time": pl.Datetime("us", "UTC"), "odometer_km": pl.Float64,
    "status": pl.String, "credited_km": pl.Float64, "gap_before": pl.Boolean,
}
ANOMALY_SCHEMA = {
    "vehicle_id": pl.String, "detected_at": pl.Datetime("us", "UTC"), "kind": pl.String,
    "odometer_before_km": pl.Float64, "odometer_after_km": pl.Float64, "detail": pl.String,
}


@dataclass(frozen=True)
class OdometerAssessment:
    readings: pl.DataFrame   # one row per distinct (vehicle, reading time), with status and credit
    anomalies: pl.DataFrame  # one row per anomaly


def distinct_odometer_readings(readings: pl.DataFrame) -> pl.DataFrame:
    """Odometer readings, one per vehicle and reading time (a value re-sent in a later
    delivery with the same time is the same reading; the first delivered wins)."""
    return (
        readings.filter(pl.col("metric") == "odometer_km")
        .sort("vehicle_id", "reading_time", "delivered_at")
        .unique(["vehicle_id", "reading_time"], keep="first", maintain_order=True)
        .select("vehicle_id", "reading_time", pl.col("value").alias("odometer_km"))
    )


def _plausible(before: float, after: float, hours: float) -> bool:
    return -TOLERANCE_KM <= after - before <= MAX_SPEED_KMH * hours + TOLERANCE_KM


def _assess_vehicle(times: np.ndarray, values: np.ndarray) -> tuple[list[str], list[float], list[bool], list[tuple]]:
    n = len(values)
    hours = lambda i, j: (times[j] - times[i]) / 3.6e9  # microseconds → hours  # noqa: E731
    status = ["valid"] * n
    # Spikes: a lone reading its neighbours contradict.
    previous = None
    for i in range(n):
        nxt = i + 1 if i + 1 < n else None
        if previous is None:
            # The first reading: a spike if the next two agree with each other but not with it.
            if i + 2 < n and not _plausible(values[i], values[i + 1], hours(i, i + 1)) \
                    and _plausible(values[i + 1], values[i + 2], hours(i + 1, i + 2)) \
                    and not _plausible(values[i], values[i + 2], hours(i, i + 2)):
                status[i] = "spike"
                continue
        elif nxt is not None and not _plausible(values[previous], values[i], hours(previous, i)) \
                and _plausible(values[previous], values[nxt], hours(previous, nxt)):
            status[i] = "spike"
            continue
        previous = i

    credited = [0.0] * n
    gap_before = [False] * n
    anomalies: list[tuple] = []
    for i in range(n):
        if status[i] == "spike":
            anomalies.append((i, "SPIKE", _last_valid(status, values, i), values[i],
                              "a lone reading the readings around it contradict; it counts for nothing"))
    last = None
    high_water = None
    for i in range(n):
        if status[i] == "spike":
            continue
        if last is None:
            last, high_water = i, values[i]
            continue
        dt = hours(last, i)
        step = values[i] - values[last]
        if dt > GAP_HOURS:
            gap_before[i] = True
            anomalies.append((i, "GAP", values[last], values[i], f"no odometer reading for {dt:.0f} h"))
        if step < -ROLLBACK_KM:
            status[i] = "rollback"
            anomalies.append((i, "ROLLBACK", values[last], values[i], f"odometer fell by {-step:.1f} km"))
            high_water = values[i]
        elif step > MAX_SPEED_KMH * dt + TOLERANCE_KM:
            status[i] = "implausible_speed"
            speed = step / dt if dt > 0 else float("inf")
            anomalies.append((i, "IMPLAUSIBLE_SPEED", values[last], values[i],
                              f"{step:.1f} km in {dt * 60:.0f} min ({speed:.0f} km/h)"))
            high_water = values[i]
        else:
            credited[i] = max(0.0, values[i] - high_water)
            high_water = max(high_water, values[i])
        last = i
    return status, credited, gap_before, anomalies


def _last_valid(status: list[str], values: np.ndarray, i: int) -> float | None:
    for j in range(i - 1, -1, -1):
        if status[j] != "spike":
            return float(values[j])
    return None


def assess_odometer(odometer: pl.DataFrame) -> OdometerAssessment:
    """Assess distinct odometer readings (`vehicle_id, reading_time, odometer_km`)."""
    odometer = odometer.sort("vehicle_id", "reading_time")
    assessed, anomalies = [], []
    for (vehicle_id,), part in odometer.partition_by("vehicle_id", as_dict=True, maintain_order=True).items():
        times = part.get_column("reading_time").dt.epoch("us").to_numpy()
        values = part.get_column("odometer_km").to_numpy()
        status, credited, gaps, found = _assess_vehicle(times, values)
        assessed.append(part.with_columns(
            status=pl.Series(status, dtype=pl.String), credited_km=pl.Series(credited, dtype=pl.Float64),
            gap_before=pl.Series(gaps, dtype=pl.Boolean)))
        stamps = part.get_column("reading_time")
        anomalies.extend({"vehicle_id": vehicle_id, "detected_at": stamps[i], "kind": kind,
                          "odometer_before_km": before, "odometer_after_km": after, "detail": detail}
                         for i, kind, before, after, detail in found)
    return OdometerAssessment(
        readings=pl.concat(assessed).select(list(ASSESSED_SCHEMA)) if assessed else pl.DataFrame(schema=ASSESSED_SCHEMA),
        anomalies=pl.DataFrame(anomalies, schema=ANOMALY_SCHEMA).sort("vehicle_id", "detected_at", "kind"),
    )


def daily_mileage(assessed: pl.DataFrame) -> pl.DataFrame:
    """Vehicle × UTC day: first and last odometer of the day, distance credited to the day
    (each increase counts on the day of the reading that ends it), and the readings behind it.
    Spikes are left out of all but `spike_readings`."""
    counted = pl.col("status") != "spike"
    by_time = pl.col("odometer_km").filter(counted).sort_by(pl.col("reading_time").filter(counted))
    return (
        assessed.group_by("vehicle_id", day=pl.col("reading_time").dt.date())
        .agg(
            odometer_start_km=by_time.first(),
            odometer_end_km=by_time.last(),
            distance_km=pl.col("credited_km").sum().round(3),
            readings=counted.sum().cast(pl.Int64),
            spike_readings=(~counted).sum().cast(pl.Int64),
        )
        .filter(pl.col("readings") > 0)
        .sort("vehicle_id", "day")
    )
