"""The maintenance forecast's thresholds: the asset's run config (Dagster launchpad)."""

import dagster as dg


class MaintenanceConfig(dg.Config):
    """Thresholds of the maintenance forecast. The defaults are what `fleetlake run` uses."""

    urgent_within_days: float = 7.0   # due within this many days: URGENT
    soon_within_days: float = 30.0    # due within this many days: SOON (beyond: OK)
    oil_due_pct: float = 15.0         # engine oil is due at this oil life
    oil_change_jump_pct: float = 10.0  # oil life rising this much is an oil change: a new trend
    tire_due_share: float = 0.75      # a tyre is due below this share of its baseline pressure
    tire_baseline_days: float = 7.0   # baseline: median of the tyre's first days of readings
    # Placard (recommended cold) pressure in kPa by vehicle id or by model name; it replaces
    # the measured baseline. The vehicle id wins over the model.
    tire_placard_kpa: dict[str, float] = {}
    tire_leak_kpa_per_day: float = 0.7  # losing faster (~3 psi a month) is a leak, not permeation
    tire_reinflation_jump_kpa: float = 10.0  # pressure rising this much is a re-inflation
    tire_trend_days: float = 7.0      # tyre trends use the last days of the segment (a leak starts suddenly)
    lv_due_pct: float = 50.0          # a 12 V battery at half charge may no longer start the car
    lv_falling_pct_per_day: float = 0.2  # a 12 V charge trend below minus this is a failing battery
    trend_days: float = 14.0          # oil, 12 V and distance per day use the last days
    stale_after_days: float = 3.0     # a component silent this long before its vehicle's as-of: UNKNOWN
    min_trend_readings: int = 6       # fewer readings than this in the window: no trend
