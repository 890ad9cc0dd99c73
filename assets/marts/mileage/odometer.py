"""Distance from the odometer alone, robust to what real odometers report.

Each vehicle's whole series is assessed at once, in reading-time order (periods are cut
afterwards, so a verdict never depends on where a period starts or ends):

- a SPIKE is a lone reading that the readings around it contradict: the step from the last
  valid reading to the next one is plausible, but the step to it or the step past it is
  not. It counts for nothing;
- a ROLLBACK is a sustained decrease (more than `ROLLBACK_KM`): nothing is credited for it
  and counting resumes from the lower value, so distance is the sum of the increases on
  either side;
- IMPLAUSIBLE_SPEED is an increase faster than a car can drive between two readings
  (`MAX_SPEED_KMH`): it is not credited, and counting resumes from the new value;
- a GAP is more than `GAP_HOURS` without a valid reading: flagged on the reading that ends
  it, and the distance driven across it still counts when the increase is plausible.

Small decreases (rounding, unit conversion) are not rollbacks: credit is the rise of the
high-water mark, so jitter is never counted twice.

Every reading keeps the step that led to it (`previous_reading_time`,
`previous_odometer_km`: the last valid reading before it), so periods, anomalies and
evidence can be cut from the assessed series without assessing again.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from assets.readings import distinct_readings

MAX_SPEED_KMH = 250.0   # faster than any car averages between two readings
TOLERANCE_KM = 1.0      # odometer resolution and conversion rounding
ROLLBACK_KM = 1.0       # a decrease beyond the tolerance is a rollback
GAP_HOURS = 72.0

# Reading statuses: "valid" and the first reading after a rollback or an implausible jump
# are valid odometer readings (counting goes on from them); a spike is not.
VALID, SPIKE, ROLLBACK, IMPLAUSIBLE_SPEED = "valid", "spike", "rollback", "implausible_speed"

TIME = pl.Datetime("us", "UTC")
ODOMETER_SCHEMA = {"vehicle_id": pl.String, "reading_time": TIME, "odometer_km": pl.Float64}
# Where a reading came from, carried through the assessment when present.
SOURCE_SCHEMA = {"event_id": pl.String, "source_unit": pl.String, "delivered_at": TIME,
                 "source_file": pl.String, "line_no": pl.Int64}
ASSESSED_SCHEMA = {
    **ODOMETER_SCHEMA, "day": pl.Date, "status": pl.String, "credited_km": pl.Float64,
    "previous_reading_time": TIME, "previous_odometer_km": pl.Float64, "gap_before": pl.Boolean,
    # the high-water mark after the reading (null for a spike): where counting resumes from
    "high_water_km": pl.Float64,
}
ANOMALY_SCHEMA = {
    "vehicle_id": pl.String, "detected_at": TIME, "kind": pl.String,
    "odometer_before_km": pl.Float64, "odometer_after_km": pl.Float64, "detail": pl.String,
    "event_id": pl.String,
}
ANOMALY_KINDS = ("ROLLBACK", "SPIKE", "IMPLAUSIBLE_SPEED", "GAP")  # DESIGN.md's words, in its order


@dataclass(frozen=True)
class OdometerAssessment:
    readings: pl.DataFrame   # one row per distinct (vehicle, reading time), with status and credit
    anomalies: pl.DataFrame  # one row per anomaly


def distinct_odometer_readings(readings: pl.DataFrame) -> pl.DataFrame:
    """Odometer readings, one per vehicle and reading time (`distinct_readings`). Source
    columns (`SOURCE_SCHEMA`) present in `readings` are kept."""
    sources = [c for c in SOURCE_SCHEMA if c in readings.columns]
    return (
        distinct_readings(readings.filter(pl.col("metric") == "odometer_km"))
        .select("vehicle_id", "reading_time", pl.col("value").alias("odometer_km"), *sources)
    )


def _plausible(before: float, after: float, hours: float) -> bool:
    return -TOLERANCE_KM <= after - before <= MAX_SPEED_KMH * hours + TOLERANCE_KM


# The assessment walks each vehicle's series in Python (a verdict depends on the verdicts
# before it): over plain lists of ints and floats, which Python indexes and adds several
# times faster than numpy's scalars.
def _spikes(times: list[int], values: list[float], start: int = 0) -> list[bool]:
    """Lone readings that the readings around them contradict, from `start` on (the reading
    before `start`, if any, is the last one before it that is not a spike). Times are in
    microseconds."""
    n = len(values)

    def ok(i: int, j: int) -> bool:
        return _plausible(values[i], values[j], (times[j] - times[i]) / 3.6e9)

    spike = [False] * n
    previous = start - 1 if start else None  # the last reading that is not a spike
    for i in range(start, n - 1):
        nxt = i + 1
        if previous is None:
            # The first reading: a spike if the next two agree with each other but not with it.
            spike[i] = i + 2 < n and not ok(i, nxt) and ok(nxt, i + 2) and not ok(i, i + 2)
        else:
            spike[i] = ok(previous, nxt) and not (ok(previous, i) and ok(i, nxt))
        if not spike[i]:
            previous = i
    return spike


def _assess_vehicle(times: list[int], values: list[float], start: int = 0,
                    high_water: float | None = None) -> dict[str, list]:
    """Assess one vehicle's readings from `start` on: the reading before `start`, if any, is
    the last valid one before them, and `high_water` the high-water mark there."""
    n = len(values)
    spike = _spikes(times, values, start)
    out: dict[str, list] = {"status": [SPIKE if s else VALID for s in spike], "credited_km": [0.0] * n,
                            "previous": [None] * n, "gap_before": [False] * n, "high_water_km": [None] * n}
    last = start - 1 if start else None  # index of the last valid reading
    for i in range(start, n):
        out["previous"][i] = last
        if spike[i]:
            continue
        if last is None:
            last, high_water = i, values[i]
            out["high_water_km"][i] = high_water
            continue
        hours = (times[i] - times[last]) / 3.6e9
        step = values[i] - values[last]
        out["gap_before"][i] = hours > GAP_HOURS
        if step < -ROLLBACK_KM:
            out["status"][i] = ROLLBACK
            high_water = values[i]
        elif step > MAX_SPEED_KMH * hours + TOLERANCE_KM:
            out["status"][i] = IMPLAUSIBLE_SPEED
            high_water = values[i]
        else:
            out["credited_km"][i] = max(0.0, values[i] - high_water)
            high_water = max(high_water, values[i])
        out["high_water_km"][i] = high_water
        last = i
    return out


def assess_odometer(odometer: pl.DataFrame, resume: pl.DataFrame | None = None) -> OdometerAssessment:
    """Assess distinct odometer readings (`vehicle_id, reading_time, odometer_km`, and any
    source columns, which are kept): every reading's status, the distance credited to it,
    and the valid reading before it.

    `resume` (`vehicle_id, reading_time, odometer_km, high_water_km`) continues an earlier
    assessment: for each vehicle in it, the last valid reading before the readings given and
    the high-water mark there (the assessed row's own columns); its readings are assessed as
    they were in the whole series."""
    anchors = (resume.select(*ODOMETER_SCHEMA, "high_water_km").cast({**ODOMETER_SCHEMA, "high_water_km": pl.Float64})
               .with_columns(anchor=pl.lit(True))
               if resume is not None and resume.height else None)
    odometer = odometer.with_columns(anchor=pl.lit(False), high_water_km=pl.lit(None, pl.Float64))
    if anchors is not None:
        odometer = pl.concat([odometer, anchors], how="diagonal_relaxed")
    # An anchor sorts first among its vehicle's readings (it is older than all of them).
    odometer = odometer.sort("vehicle_id", "reading_time", "anchor", descending=[False, False, True])
    times = odometer.get_column("reading_time").dt.epoch("us").to_list()
    values = odometer.get_column("odometer_km").fill_null(float("nan")).to_list()  # NaN: as numpy saw a null
    is_anchor = odometer.get_column("anchor").to_list()
    resumed_at = odometer.get_column("high_water_km").fill_null(float("nan")).to_list()
    columns: dict[str, list] = {"status": [], "credited_km": [], "previous": [], "gap_before": [],
                                "high_water_km": []}
    start = 0
    for length in odometer.get_column("vehicle_id").rle().struct.field("len").to_list():
        resumed = bool(is_anchor[start])
        found = _assess_vehicle(times[start:start + length], values[start:start + length], int(resumed),
                                float(resumed_at[start]) if resumed else None)
        columns["previous"].extend(None if p is None else start + p for p in found.pop("previous"))
        for name, values_ in found.items():
            columns[name].extend(values_)
        start += length
    previous = pl.Series(columns.pop("previous"), dtype=pl.Int64)
    assessed = odometer.with_columns(
        day=pl.col("reading_time").dt.date(),
        status=pl.Series(columns["status"], dtype=pl.String),
        credited_km=pl.Series(columns["credited_km"], dtype=pl.Float64),
        previous_reading_time=odometer.get_column("reading_time").gather(previous),
        previous_odometer_km=odometer.get_column("odometer_km").gather(previous),
        gap_before=pl.Series(columns["gap_before"], dtype=pl.Boolean),
        high_water_km=pl.Series(columns["high_water_km"], dtype=pl.Float64),
    ).filter(~pl.col("anchor"))
    extra = [c for c in SOURCE_SCHEMA if c in assessed.columns]
    assessed = assessed.select(*ASSESSED_SCHEMA, *extra).cast(ASSESSED_SCHEMA)  # type: ignore[arg-type]
    return OdometerAssessment(readings=assessed, anomalies=odometer_anomalies(assessed))


def odometer_anomalies(assessed: pl.DataFrame) -> pl.DataFrame:
    """One row per anomaly of assessed readings, at the reading that shows it: a spike at
    the spike, a rollback or an implausible jump at the first reading after it, a gap at
    the reading that ends it."""
    status, before, after = pl.col("status"), pl.col("previous_odometer_km"), pl.col("odometer_km")
    hours = (pl.col("reading_time") - pl.col("previous_reading_time")).dt.total_microseconds() / 3.6e9
    step = after - before
    kinds = [
        ("SPIKE", status == SPIKE,
         pl.lit("a lone reading the readings around it contradict; it counts for nothing")),
        ("ROLLBACK", status == ROLLBACK, pl.format("odometer fell by {} km", step.abs().round(1))),
        ("IMPLAUSIBLE_SPEED", status == IMPLAUSIBLE_SPEED,
         pl.format("{} km in {} min ({} km/h)", step.round(1), (hours * 60).round(0).cast(pl.Int64),
                   pl.when(hours > 0).then((step / hours).round(0).cast(pl.Int64).cast(pl.String))
                   .otherwise(pl.lit("inf")))),
        ("GAP", pl.col("gap_before"), pl.format("no odometer reading for {} h", hours.round(0).cast(pl.Int64))),
    ]
    event_id = pl.col("event_id") if "event_id" in assessed.columns else pl.lit(None, pl.String)
    found = [
        assessed.filter(condition).select(
            "vehicle_id", detected_at=pl.col("reading_time"), kind=pl.lit(kind),
            odometer_before_km=before, odometer_after_km=after, detail=detail, event_id=event_id)
        for kind, condition, detail in kinds
    ]
    return (pl.concat(found).cast(ANOMALY_SCHEMA)  # type: ignore[arg-type]
            .sort("vehicle_id", "detected_at", "kind"))


def daily_mileage(assessed: pl.DataFrame) -> pl.DataFrame:
    """Vehicle × UTC day: first and last odometer of the day, distance credited to the day
    (each increase counts on the day of the reading that ends it), and the readings behind it.
    Spikes are left out of all but `spike_readings`."""
    counted = pl.col("status") != SPIKE
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
