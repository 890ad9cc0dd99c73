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
