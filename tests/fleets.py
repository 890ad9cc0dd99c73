"""Readings of fleets that Fleetlake's simulator did not make, for tests against known truth."""
from datetime import UTC, datetime, timedelta
import numpy as np
import polars as pl

def steady_charging_fleet(vehicles: int = 200, days: int = 30, seed: int = 7, kw: float = 7.2,
                          usable: float = 60.0, limit: float = 80.0) -> pl.DataFrame:
    """Cars that charge every evening at a steady `kw` from wherever the day's driving left
    them up to a `limit` % charge limit, which they reach between two readings (every 10-90
    minutes). The first reading after the stop still says charging, with the power snapshot
    from before it. True usable capacity = nominal = `usable` (state of health 100 %)."""
    rng = np.random.default_rng(seed)
    rows = []
    start = datetime(2026, 9, 1, tzinfo=UTC)
    for v in range(vehicles):
        vid = f"v{v:03d}"
        odo = 1000.0
        rows.append((vid, start, "battery_capacity_kwh", usable))
        soc = float(rng.uniform(30, 70))
        for d in range(days):
            day = start + timedelta(days=d)
            # drive: soc drops
            soc = max(10.0, soc - float(rng.uniform(10, 40)))
            odo += float(rng.uniform(20, 80))
            plug = day + timedelta(hours=float(rng.uniform(17, 22)))
            hours = (limit - soc) / 100 * usable / kw
            stop = plug + timedelta(hours=hours)
            unplug = stop + timedelta(hours=float(rng.uniform(1, 8)))
            t = plug + timedelta(minutes=float(rng.uniform(0, 5)))
            lagging = True  # the first reading after the stop still says charging, power a stale snapshot
            while t < unplug:
                charging = t < stop or lagging
                if t >= stop:
                    lagging = False
                h = min((t - plug).total_seconds() / 3600, hours)
                s = round(soc + kw * h / usable * 100, 1)
                for m, val in (("is_charging", float(charging)), ("is_plugged_in", 1.0), ("soc_pct", s),
                               ("charge_power_kw", kw if charging else 0.0), ("odometer_km", odo)):
                    rows.append((vid, t, m, val))
                t += timedelta(minutes=float(rng.uniform(10, 90)))
            for m, val in (("is_charging", 0.0), ("is_plugged_in", 0.0), ("soc_pct", limit), ("odometer_km", odo)):
                rows.append((vid, unplug, m, val))
            soc = limit
    f = pl.DataFrame(rows, schema={"vehicle_id": pl.String, "reading_time": pl.Datetime("us", "UTC"),
                                   "metric": pl.String, "value": pl.Float64}, orient="row")
    return f.with_columns(component=pl.lit(None, pl.String), delivered_at=pl.col("reading_time"), event_id=pl.lit("e"))


# How a vehicle of `charger_reports_fleet` reports its charger: a detailed charging status
# word, a fast-charger flag, or neither (only power).
CHARGER_REPORTING = ("status", "fast_charger", "power_only")


def charger_reports_fleet(vehicles: int = 24, days: int = 20, seed: int = 11) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Cars that charge once a day, AC (3.7-11 kW) or DC (35-150 kW, and some DC sessions on a
    weak or cold charger at 15-21 kW, which power alone would take for AC), up to a charge limit
    that the car reports (70-100 %, changed now and then; every fourth car reports none), or are
    unplugged before it (about a third). A third of the cars report a detailed charging status word, a third the fast-charger
    flag, a third neither; the status words are the charge page's (CHARGING, NOT_CHARGING,
    FULLY_CHARGED) with the current type in the word (CHARGING_AC, CHARGING_DC), as some makes send. Readings every 10-50 minutes. Returns (readings, truth): truth has one
    row per session with `vehicle_id, plugged_at, unplugged_at, current_type, charge_limit_pct,
    completion, reporting, charging_readings` (readings that show it charging: a session
    with none is invisible in the readings)."""
    rng = np.random.default_rng(seed)
    rows, truth = [], []
    start = datetime(2026, 9, 1, tzinfo=UTC)
    usable = 64.0
    for v in range(vehicles):
        vid = f"c{v:03d}"
        reporting = CHARGER_REPORTING[v % 3]
        reports_limit = v % 4 != 3  # every fourth car does not report its limit
        limit = float(rng.choice([70.0, 80.0, 90.0, 100.0]))
        odo, soc = 5000.0, float(rng.uniform(30, 60))
        rows.append((vid, start, "battery_capacity_kwh", None, usable))
        for d in range(days):
            if rng.random() < 0.15:
                limit = float(rng.choice([70.0, 80.0, 90.0, 100.0]))  # the owner changed it
            soc = max(8.0, soc - float(rng.uniform(15, 45)))
            odo += float(rng.uniform(30, 120))
            dc = rng.random() < 0.35
            kw = (float(rng.uniform(15, 21)) if rng.random() < 0.3 else float(rng.uniform(35, 150))) if dc \
                else float(rng.choice([3.7, 7.2, 11.0]))
            plug = start + timedelta(days=d, hours=float(rng.uniform(8, 21)))
            hours_to_limit = max(limit - soc, 0.0) / 100 * usable / kw
            if hours_to_limit < 0.2:
                continue  # nothing to charge: no session
            interrupted = rng.random() < 0.35 and hours_to_limit > 0.5
            charge_h = hours_to_limit * float(rng.uniform(0.3, 0.8)) if interrupted else hours_to_limit
            stop = plug + timedelta(minutes=2, hours=charge_h)
            unplug = stop + (timedelta(minutes=1) if interrupted else timedelta(hours=float(rng.uniform(0.3, 3))))
            end_soc = round(soc + kw * charge_h / usable * 100, 1)
            # readings while charging every 10-50 min, then every 20 min while plugged in, then
            # (usually) one when the car reports the unplug; some cars sleep through it
            times, t = [], plug
            while t < stop:
                times.append(t)
                t += timedelta(minutes=float(rng.uniform(10, 50)))
            while t < unplug:
                times.append(t)
                t += timedelta(minutes=20)
            if rng.random() < 0.8:
                times.append(unplug + timedelta(minutes=2))
            charging_readings = sum(plug + timedelta(minutes=2) <= x < stop for x in times)
            truth.append((vid, plug, unplug, "DC" if dc else "AC", limit if reports_limit else None,
                          "interrupted" if interrupted else "complete", reporting, charging_readings))
            for t in times:
                plugged = t < unplug
                charging = plug + timedelta(minutes=2) <= t < stop
                h = min(max((t - plug).total_seconds() / 3600 - 2 / 60, 0.0), charge_h)
                s = round(soc + kw * h / usable * 100, 1)
                readings = [("is_charging", None, float(charging)), ("is_plugged_in", None, float(plugged)),
                            ("soc_pct", None, s), ("charge_power_kw", None, kw if charging else 0.0),
                            ("odometer_km", None, odo)]
                if reports_limit:
                    readings.append(("charge_limit_pct", None, limit))
                if reporting == "status":
                    word = (("CHARGING_DC" if dc else "CHARGING_AC") if charging
                            else "FULLY_CHARGED" if plugged and not interrupted else "NOT_CHARGING")
                    readings.append(("charging_status", word, None))
                elif reporting == "fast_charger" and plugged:
                    readings.append(("is_fast_charger", None, float(dc)))
                rows += [(vid, t, m, comp, val) for m, comp, val in readings]
            soc = end_soc
    f = pl.DataFrame(rows, schema={"vehicle_id": pl.String, "reading_time": pl.Datetime("us", "UTC"),
                                   "metric": pl.String, "component": pl.String, "value": pl.Float64}, orient="row")
    t = pl.DataFrame(truth, schema={"vehicle_id": pl.String, "plugged_at": pl.Datetime("us", "UTC"),
                                    "unplugged_at": pl.Datetime("us", "UTC"), "current_type": pl.String,
                                    "charge_limit_pct": pl.Float64, "completion": pl.String,
                                    "reporting": pl.String, "charging_readings": pl.Int64}, orient="row")
    return f.with_columns(delivered_at=pl.col("reading_time"), event_id=pl.lit("e")), t
