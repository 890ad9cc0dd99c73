"""The per-component rules of the maintenance forecast: engine oil, tyres, 12 V battery and
trouble codes, each from one vehicle's series, and the urgency they give."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from assets.marts.maintenance.config import MaintenanceConfig
from assets.marts.trends import recent_trend, segment_starts, theil_sen

ENGINE_OIL = "engine_oil"
LOW_VOLTAGE_BATTERY = "low_voltage_battery"
DIAGNOSTICS = "diagnostics"
TIRE_COMPONENTS = {  # readings' tyre component → the mart's component
    "front_left": "tire_front_left", "front_right": "tire_front_right",
    "rear_left": "tire_rear_left", "rear_right": "tire_rear_right",
}
COMPONENTS = [ENGINE_OIL, *TIRE_COMPONENTS.values(), LOW_VOLTAGE_BATTERY, DIAGNOSTICS]
URGENCIES = ["PAST_DUE", "URGENT", "SOON", "OK", "UNKNOWN"]  # most pressing first

# A trouble code's first letter names the vehicle system; its severity follows from what a
# fault there can do: powertrain and chassis (engine, brakes, steering) faults can damage the
# car or make it unsafe, network faults cut modules off, body faults are mostly comfort.
DTC_SYSTEMS = {"P": ("powertrain", "HIGH"), "C": ("chassis", "HIGH"), "U": ("network", "MEDIUM"),
               "B": ("body", "LOW")}
SEVERITY_URGENCY = {"HIGH": "URGENT", "MEDIUM": "SOON", "LOW": "SOON"}

MICROS_PER_DAY = 86_400e6

FORECAST_SCHEMA = {
    "vehicle_id": pl.String, "component": pl.String, "as_of": pl.Datetime("us", "UTC"),
    "current_value": pl.Float64, "unit": pl.String, "baseline_value": pl.Float64,
    "threshold_value": pl.Float64, "trend_per_day": pl.Float64, "trend_since": pl.Datetime("us", "UTC"),
    "predicted_due_at": pl.Datetime("us", "UTC"), "predicted_due_date": pl.Date,
    "predicted_due_odometer_km": pl.Float64, "days_until_due": pl.Float64, "urgency": pl.String,
    "finding": pl.String, "detail": pl.String, "evidence_readings": pl.Int64,
}
TROUBLE_CODE_SCHEMA = {
    "vehicle_id": pl.String, "code": pl.String, "system": pl.String, "severity": pl.String,
    "first_seen_at": pl.Datetime("us", "UTC"), "last_reported_at": pl.Datetime("us", "UTC"),
    "reports": pl.Int64,
}
TROUBLE_CODE_METRICS = ["dtc_count", "dtc_code"]  # what `active_trouble_codes` reads
MAINTENANCE_METRICS = ["oil_life_pct", "tire_pressure_kpa", "lv_battery_soc_pct", *TROUBLE_CODE_METRICS,
                       "lv_battery_status", "system_status", "service_at", "service_odometer_km"]

# What a car's own ALERT for a diagnostics system (`diagnostics-<system>`) means for the forecast:
# the components it concerns and the urgency it raises them to at least. The car has already
# lit a warning for the driver: engine, oil, high-voltage battery, brakes and safety systems
# are URGENT (damage or safety), a tyre-pressure warning is under-inflation on some tyre (the
# TPMS does not say which, so all four), the rest SOON.
_TIRES = tuple(TIRE_COMPONENTS.values())
SYSTEM_ALERTS: dict[str, tuple[tuple[str, ...], str]] = {
    **{system: ((DIAGNOSTICS,), "URGENT") for system in (
        "mil", "evhvbattery", "evbatteryconditioning", "evdriveunit", "evcharging", "abs", "airbag", "brakefluid",
        "activesafety", "driverassistance", "transmission", "waterinfuel")},
    **{system: ((DIAGNOSTICS,), "SOON") for system in ("emissions", "lighting", "telematics", "washerfluid")},
    **{system: ((ENGINE_OIL,), "URGENT") for system in ("oillife", "oilpressure", "oiltemperature")},
    "tirepressure": (_TIRES, "URGENT"),
    "tirepressuremonitoring": (_TIRES, "SOON"),
}
# The 12 V battery's own status (`lowvoltagebattery-status`): WARN and BAD raise its forecast.
LV_STATUS_URGENCY = {"WARN": "SOON", "BAD": "URGENT"}


# ---------------------------------------------------------------------------------------
# Urgency

def urgency(days_until_due: float | None, config: MaintenanceConfig) -> str:
    """From the days until due: PAST_DUE at or before 0, URGENT within `urgent_within_days`,
    SOON within `soon_within_days`, OK otherwise (also when nothing moves towards due)."""
    if days_until_due is None:
        return "OK"
    if days_until_due <= 0:
        return "PAST_DUE"
    if days_until_due <= config.urgent_within_days:
        return "URGENT"
    if days_until_due <= config.soon_within_days:
        return "SOON"
    return "OK"


def at_least(level: str, floor: str) -> str:
    """The more pressing of two urgencies."""
    return min(level, floor, key=URGENCIES.index)


# ---------------------------------------------------------------------------------------
# Components

def _to_datetime(day: float) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=round(day * MICROS_PER_DAY))


def _row(vehicle_id: str, component: str, as_of_day: float, config: MaintenanceConfig, *, unit: str,
         current: float | None = None, baseline: float | None = None, threshold: float | None = None,
         trend: float | None = None, since: float | None = None, due_day: float | None = None,
         due_odometer: float | None = None, evidence: int = 0, finding: str | None = None,
         detail: str | None = None, level: str | None = None, floor: str | None = None,
         last_seen: float | None = None) -> dict:
    """One forecast row; urgency from the days until due unless `level` is given, UNKNOWN when
    the component's latest reading (`last_seen`) is stale and it was not already past due,
    raised to at least `floor`."""
    days_until = None if due_day is None else due_day - as_of_day
    if level is None:
        level = urgency(days_until, config)
        if current is not None and threshold is not None and current <= threshold:
            level = "PAST_DUE"
    if last_seen is not None and as_of_day - last_seen > config.stale_after_days:
        # Readings stopped (a revoked permission, a broken sensor): what the trend said then
        # is no forecast now.
        detail = "; ".join(filter(None, [detail, f"no reading since {_to_datetime(last_seen):%Y-%m-%d}"]))
        if level != "PAST_DUE":
            level = "UNKNOWN"
    if floor is not None:
        level = at_least(level, floor)
    due_at = None if due_day is None else _to_datetime(due_day)
    return {
        "vehicle_id": vehicle_id, "component": component, "as_of": _to_datetime(as_of_day),
        "current_value": current, "unit": unit, "baseline_value": baseline, "threshold_value": threshold,
        "trend_per_day": trend, "trend_since": None if since is None else _to_datetime(since),
        "predicted_due_at": due_at, "predicted_due_date": None if due_at is None else due_at.date(),
        "predicted_due_odometer_km": due_odometer, "days_until_due": days_until, "urgency": level,
        "finding": finding, "detail": detail, "evidence_readings": evidence,
    }


def _unknown(vehicle_id: str, component: str, as_of_day: float, config: MaintenanceConfig, unit: str,
             detail: str) -> dict:
    return _row(vehicle_id, component, as_of_day, config, unit=unit, detail=detail, level="UNKNOWN")


def _crossing_day(days: np.ndarray, values: np.ndarray, threshold: float) -> float | None:
    """When a falling series first reached `threshold`, interpolated between the last
    reading above it and the first at or below it; None if it started at or below it."""
    below = np.nonzero(values <= threshold)[0]
    if len(below) == 0 or below[0] == 0:
        return None
    k = int(below[0])
    d0, d1, v0, v1 = days[k - 1], days[k], values[k - 1], values[k]
    return float(d0 + (v0 - threshold) / (v0 - v1) * (d1 - d0))


def _after_service(days: np.ndarray, serviced_day: float | None) -> int | None:
    """The index of the first reading after the vehicle's latest service, if any reading follows it."""
    if serviced_day is None:
        return None
    after = np.nonzero(days >= serviced_day)[0]
    return int(after[0]) if len(after) else None


def _service_note(serviced_day: float) -> str:
    return f"since a service on {_to_datetime(serviced_day):%Y-%m-%d}"


def forecast_oil(vehicle_id: str, oil: pl.DataFrame, km_per_day: float | None, as_of_day: float,
                 config: MaintenanceConfig, serviced_day: float | None = None) -> dict:
    """Engine oil, from oil-life readings with the odometer of the same delivery.

    Oil life falls with distance, so the trend is fitted against the odometer (per km) on
    the segment since the last oil change, and turned into a trend per day with the
    vehicle's recent distance per day; without enough distance in the segment, the trend is
    fitted against time. Readings at 0 % are left out of the fit (the gauge stops there)."""
    due = config.oil_due_pct
    if oil.is_empty():
        return _unknown(vehicle_id, ENGINE_OIL, as_of_day, config, "percent", "no oil-life readings")
    days, values = oil["day"].to_numpy(), oil["value"].to_numpy()
    odometer = oil["odometer_km"].to_numpy().astype(float)
    start = segment_starts(values, config.oil_change_jump_pct)[-1]
    detail = "since an oil change" if start > 0 else None
    # a service (`service-records`) restarts the trend: what the oil did before it is history
    service_start = _after_service(days, serviced_day)
    if service_start is not None and service_start > start:
        start, detail = service_start, _service_note(serviced_day)
    days, values, odometer = days[start:], values[start:], odometer[start:]
    current, last_day = float(values[-1]), float(days[-1])
    base = dict(unit="percent", current=current, baseline=100.0, threshold=due, since=float(days[0]),
                last_seen=last_day)

    positive = values > 0
    last_positive_day = float(days[positive][-1]) if positive.any() else last_day
    fit = positive & (days >= last_positive_day - config.trend_days) & np.isfinite(odometer)
    per_km = None
    if fit.sum() >= config.min_trend_readings and np.ptp(odometer[fit]) >= 10.0:
        per_km = theil_sen(odometer[fit], values[fit], float(odometer[fit][-1]))
    if per_km is not None and per_km.slope < 0 and km_per_day is not None:
        per_day = per_km.slope * km_per_day
        # The odometer at which the fitted line reaches the due value.
        due_odometer = float(odometer[fit][-1] + (due - per_km.level) / per_km.slope)
        evidence = per_km.readings
    else:
        by_time = recent_trend(days[positive], values[positive], config.trend_days, config.min_trend_readings)
        if by_time is None:
            return _row(vehicle_id, ENGINE_OIL, as_of_day, config, **base, evidence=len(values),
                        detail="too few readings for a trend", level="PAST_DUE" if current <= due else "UNKNOWN")
        per_day, due_odometer, evidence = by_time.slope, None, by_time.readings

    due_day = _crossing_day(days, values, due)  # observed in the data: a fact, not a forecast
    if due_day is None and per_day < 0:
        # Extrapolate from the last reading above 0 %: a gauge stuck at 0 says nothing of when.
        if positive.any():
            k = int(np.nonzero(positive)[0][-1])
            due_day = float(days[k]) + (float(values[k]) - due) / -per_day
    return _row(vehicle_id, ENGINE_OIL, as_of_day, config, **base, trend=per_day, due_day=due_day,
                due_odometer=due_odometer if per_day < 0 else None, evidence=evidence, detail=detail)


def tire_baseline(days: np.ndarray, values: np.ndarray, baseline_days: float) -> float:
    """The median of the tyre's readings in its first `baseline_days` days."""
    return float(np.median(values[days <= days[0] + baseline_days]))


def forecast_tire(vehicle_id: str, component: str, tire: pl.DataFrame, placard_kpa: float | None,
                  as_of_day: float, config: MaintenanceConfig, serviced_day: float | None = None) -> dict:
    """One tyre, from its pressure readings: baseline (placard if configured, else the
    median of its first days), the segment since the last re-inflation, and the loss rate
    over its last `tire_trend_days`. A re-inflation does not mend a leak: right after one,
    when the new segment is still too short for a trend, the loss rate before it stands."""
    if tire.is_empty():
        return _unknown(vehicle_id, component, as_of_day, config, "kPa", "no pressure readings")
    days, values = tire["day"].to_numpy(), tire["value"].to_numpy()
    baseline = placard_kpa if placard_kpa is not None else tire_baseline(days, values, config.tire_baseline_days)
    threshold = config.tire_due_share * baseline
    starts = segment_starts(values, config.tire_reinflation_jump_kpa)
    detail = "since a re-inflation" if len(starts) > 1 else None
    # a service (`service-records`) checks and sets the tyres: the trend starts after it, and
    # the loss rate before it stands until the new segment has its own, as after a re-inflation
    service_start = _after_service(days, serviced_day)
    if service_start is not None and service_start > starts[-1]:
        starts, detail = [*starts, service_start], _service_note(serviced_day)
    seg_days, seg_values = days[starts[-1]:], values[starts[-1]:]
    base = dict(unit="kPa", baseline=round(baseline, 2), threshold=round(threshold, 2), last_seen=float(days[-1]))
    if placard_kpa is not None:
        detail = "; ".join(filter(None, ["baseline from the placard", detail]))

    trend = recent_trend(seg_days, seg_values, config.tire_trend_days, config.min_trend_readings)
    since = float(seg_days[0])
    level = trend.level if trend is not None else float(np.median(seg_values[-3:]))
    if trend is None and len(starts) > 1:
        before = slice(starts[-2], starts[-1])
        trend = recent_trend(days[before], values[before], config.tire_trend_days, config.min_trend_readings)
        since = float(days[starts[-2]])
        detail = "loss rate from before the latest re-inflation"
    if trend is None:
        return _row(vehicle_id, component, as_of_day, config, **base, current=round(level, 2),
                    evidence=len(seg_values), detail="too few readings for a trend",
                    level="PAST_DUE" if level <= threshold else "UNKNOWN")
    last_day = float(seg_days[-1])
    due_day = last_day + (level - threshold) / -trend.slope if trend.slope < 0 else None
    leaking = trend.slope <= -config.tire_leak_kpa_per_day
    return _row(vehicle_id, component, as_of_day, config, **base, current=round(level, 2), trend=trend.slope,
                since=since, due_day=due_day, evidence=trend.readings, detail=detail,
                finding="LEAKING" if leaking else None, floor="SOON" if leaking else None)


def forecast_low_voltage(vehicle_id: str, lv: pl.DataFrame, as_of_day: float, config: MaintenanceConfig) -> dict:
    """The 12 V battery, from its state of charge: the trend over the last `trend_days`.
    A healthy battery holds its charge (a daily cycle and sensor noise around a level), so
    only a trend below -`lv_falling_pct_per_day` counts as moving towards due; it is a
    FALLING finding, at least SOON. Below `lv_due_pct` the battery is due."""
    due = config.lv_due_pct
    if lv.is_empty():
        return _unknown(vehicle_id, LOW_VOLTAGE_BATTERY, as_of_day, config, "percent", "no 12 V readings")
    days, values = lv["day"].to_numpy(), lv["value"].to_numpy()
    trend = recent_trend(days, values, config.trend_days, config.min_trend_readings)
    if trend is None:
        current = float(np.median(values[-3:]))
        return _row(vehicle_id, LOW_VOLTAGE_BATTERY, as_of_day, config, unit="percent", current=round(current, 2),
                    threshold=due, evidence=len(values), detail="too few readings for a trend",
                    last_seen=float(days[-1]),
                    level="PAST_DUE" if current <= due else "UNKNOWN")
    falling = trend.slope <= -config.lv_falling_pct_per_day
    last_day = float(days[-1])
    due_day = last_day + (trend.level - due) / -trend.slope if falling else None
    return _row(vehicle_id, LOW_VOLTAGE_BATTERY, as_of_day, config, unit="percent", current=round(trend.level, 2),
                threshold=due, trend=trend.slope, since=float(days[days >= last_day - config.trend_days][0]),
                due_day=due_day, evidence=trend.readings, finding="FALLING" if falling else None, last_seen=last_day,
                floor="SOON" if falling else None)


def dtc_system(code: str) -> tuple[str, str]:
    """(system, severity) of a trouble code, from its first letter."""
    return DTC_SYSTEMS.get(code[:1].upper(), ("unknown", "MEDIUM"))


def active_trouble_codes(lists: pl.DataFrame, codes: pl.DataFrame) -> pl.DataFrame:
    """The codes in each vehicle's latest trouble-code list, with their system, severity,
    first-seen time (the code's own timestamp where the car sent one, else its first report)
    and how many lists reported them.

    `lists`: vehicle_id, reading_time of every trouble-code list (dtc_count readings);
    `codes`: vehicle_id, reading_time, code, noted_at of every code in them."""
    latest = pl.concat([lists.select("vehicle_id", "reading_time"), codes.select("vehicle_id", "reading_time")]) \
        .group_by("vehicle_id").agg(pl.col("reading_time").max().alias("latest_list"))
    history = codes.group_by("vehicle_id", "code").agg(
        pl.coalesce(pl.col("noted_at").min(), pl.col("reading_time").min()).alias("first_seen_at"),
        pl.col("reading_time").max().alias("last_reported_at"),
        pl.col("reading_time").n_unique().cast(pl.Int64).alias("reports"),
    )
    active = history.join(latest, on="vehicle_id").filter(pl.col("last_reported_at") == pl.col("latest_list"))
    return active.with_columns(
        pl.col("code").map_elements(lambda c: dtc_system(c)[0], return_dtype=pl.String).alias("system"),
        pl.col("code").map_elements(lambda c: dtc_system(c)[1], return_dtype=pl.String).alias("severity"),
    ).select(list(TROUBLE_CODE_SCHEMA)).sort("vehicle_id", "first_seen_at", "code")


def forecast_diagnostics(vehicle_id: str, list_days: np.ndarray, active: pl.DataFrame, as_of_day: float,
                         config: MaintenanceConfig) -> dict:
    """Diagnostics: the active codes of the latest list (`list_days`: when the lists were
    read). Urgency from the most severe code (HIGH: URGENT; MEDIUM, LOW: SOON), OK with none;
    due since the oldest code appeared."""
    if len(list_days) == 0:
        return _unknown(vehicle_id, DIAGNOSTICS, as_of_day, config, "codes", "no trouble-code lists")
    if active.is_empty():
        return _row(vehicle_id, DIAGNOSTICS, as_of_day, config, unit="codes", current=0.0, evidence=1,
                    last_seen=float(list_days.max()))
    severities = active["severity"].to_list()
    worst = min(severities, key=["HIGH", "MEDIUM", "LOW"].index)
    first = active["first_seen_at"].min()
    first_day = first.timestamp() * 1e6 / MICROS_PER_DAY
    detail = ", ".join(f"{r['code']} ({r['system']}, {r['severity']}, since {r['first_seen_at']:%Y-%m-%d %H:%M})"
                       for r in active.sort("first_seen_at").iter_rows(named=True))
    return _row(vehicle_id, DIAGNOSTICS, as_of_day, config, unit="codes", current=float(active.height),
                since=first_day, due_day=first_day, evidence=int(active["reports"].max()),
                finding="ACTIVE_CODES", detail=detail, level=SEVERITY_URGENCY[worst])


# ---------------------------------------------------------------------------------------
# What the car itself reports

def reported_statuses(readings: pl.DataFrame, as_of: pl.DataFrame, config: MaintenanceConfig) -> pl.DataFrame:
    """Per vehicle and forecast component, what the car's own latest status readings say, if
    fresh (within `stale_after_days` of the vehicle's as-of): `reported_status` (12 V: GOOD,
    WARN or BAD; otherwise OK, or ALERT with the alerting systems), the urgency it raises the
    forecast to at least (`floor`), its `status_finding` (STATUS_WARN, STATUS_BAD,
    SYSTEM_ALERT) and `status_detail`.

    `readings`: distinct readings (vehicle_id, reading_time, metric, component, value) of
    `lv_battery_status` (component: the word) and `system_status` (component: the system)."""
    fresh = (readings.filter(pl.col("metric").is_in(["lv_battery_status", "system_status"]))
             .join(as_of, on="vehicle_id")
             .filter(pl.col("reading_time") >= pl.col("as_of") - pl.duration(days=config.stale_after_days)))
    latest = fresh.sort("reading_time").group_by("vehicle_id", "metric", "component").last()
    lv = (latest.filter(pl.col("metric") == "lv_battery_status").sort("reading_time")
          .group_by("vehicle_id").last()  # the latest word, whichever it is
          .select("vehicle_id", pl.lit(LOW_VOLTAGE_BATTERY).alias("component"),
                  pl.col("component").alias("reported_status"),
                  pl.col("component").replace_strict(LV_STATUS_URGENCY, default=None, return_dtype=pl.String)
                  .alias("floor"),
                  pl.when(pl.col("component") != "GOOD").then(pl.lit("STATUS_") + pl.col("component"))
                  .alias("status_finding"),
                  pl.format("12 V status {} at {}", pl.col("component"), pl.col("reading_time").dt.strftime(
                      "%Y-%m-%d %H:%M")).alias("status_detail")))
    systems = latest.filter((pl.col("metric") == "system_status") & pl.col("component").is_in(list(SYSTEM_ALERTS)))
    concern = pl.DataFrame([(system, component, floor) for system, (components, floor) in SYSTEM_ALERTS.items()
                            for component in components],
                           schema={"system": pl.String, "component": pl.String, "floor": pl.String}, orient="row")
    per_component = (systems.rename({"component": "system"}).join(concern, on="system")
                     .with_columns(alert=pl.col("value") >= 1, rank=pl.col("floor").replace_strict(
                         {u: i for i, u in enumerate(URGENCIES)}, return_dtype=pl.Int64))
                     .sort("vehicle_id", "component", "system")
                     .group_by("vehicle_id", "component", maintain_order=True)
                     .agg(pl.col("system").filter(pl.col("alert")).alias("alerts"),
                          pl.col("floor").filter(pl.col("alert")).sort_by(
                              pl.col("rank").filter(pl.col("alert"))).first().alias("floor")))
    alerting = pl.col("alerts").list.len() > 0
    systems = per_component.select(
        "vehicle_id", "component",
        pl.when(alerting).then(pl.lit("ALERT: ") + pl.col("alerts").list.join(", ")).otherwise(pl.lit("OK"))
        .alias("reported_status"),
        pl.when(alerting).then(pl.col("floor")).alias("floor"),
        pl.when(alerting).then(pl.lit("SYSTEM_ALERT")).alias("status_finding"),
        pl.when(alerting).then(pl.lit("the car reports ") + pl.col("alerts").list.join(", ") + pl.lit(" ALERT"))
        .alias("status_detail"))
    return pl.concat([lv, systems], how="vertical_relaxed")


def apply_reported_statuses(forecast: pl.DataFrame, statuses: pl.DataFrame) -> pl.DataFrame:
    """The forecast with the car's own statuses (`reported_statuses`): urgency raised to at
    least their floor, their finding where the forecast has none, their detail added, and the
    `reported_status` column."""
    rank = {u: i for i, u in enumerate(URGENCIES)}
    joined = forecast.join(statuses, on=["vehicle_id", "component"], how="left")
    current = pl.col("urgency").replace_strict(rank, return_dtype=pl.Int64)
    floor = pl.col("floor").replace_strict(rank, default=None, return_dtype=pl.Int64)
    raised = pl.min_horizontal(current, floor.fill_null(len(URGENCIES)))
    return joined.with_columns(
        raised.replace_strict(dict(enumerate(URGENCIES)), return_dtype=pl.String).alias("urgency"),
        pl.coalesce("finding", "status_finding").alias("finding"),
        pl.when(pl.col("status_detail").is_null()).then(pl.col("detail"))
        .when(pl.col("detail").is_null()).then(pl.col("status_detail"))
        .otherwise(pl.col("detail") + pl.lit("; ") + pl.col("status_detail")).alias("detail"),
    ).select(*FORECAST_SCHEMA, "reported_status")
