"""The car's own charge records (`charge-chargerecords`, where a make provides them) beside
Fleetlake's sessions: the OEM's sessions, used to check and to correct ours.

Each session takes the record whose start-to-end overlaps its plug-in the most (a record is
one session's at most: the session it overlaps the most). The session then carries the
record's id and energy, and how far its own energy is from it. Where its own energy is an
estimate from the change in state of charge, the record's energy (the car's measurement)
replaces it, with `energy_source` `charge_record`; the car's own energy counter
(`energy_added`) is kept and only compared.
"""

from __future__ import annotations

import polars as pl

RECORD_METRICS = ("charge_record_started_at", "charge_record_ended_at", "charge_record_energy_kwh")
RECORD_SCHEMA = pl.Schema({"vehicle_id": pl.String, "record_id": pl.String, "record_started_at": pl.Datetime("us", "UTC"),
                           "record_ended_at": pl.Datetime("us", "UTC"), "record_energy_kwh": pl.Float64})


def charge_records(readings: pl.DataFrame) -> pl.DataFrame:
    """One row per record (RECORD_SCHEMA) from readings of RECORD_METRICS (vehicle_id, metric,
    component, value, noted_at, delivered_at): a record is sent again in later deliveries,
    and the first delivered counts."""
    if readings.is_empty():
        return RECORD_SCHEMA.to_frame()
    first = (readings.filter(pl.col("metric").is_in(RECORD_METRICS))
             .sort("delivered_at", nulls_last=True)
             .unique(["vehicle_id", "metric", "component"], keep="first", maintain_order=True))
    wide = first.group_by("vehicle_id", pl.col("component").alias("record_id")).agg(
        pl.col("noted_at").filter(pl.col("metric") == "charge_record_started_at").first().alias("record_started_at"),
        pl.col("noted_at").filter(pl.col("metric") == "charge_record_ended_at").first().alias("record_ended_at"),
        pl.col("value").filter(pl.col("metric") == "charge_record_energy_kwh").first().alias("record_energy_kwh"))
    return (wide.filter(pl.col("record_started_at").is_not_null() & pl.col("record_ended_at").is_not_null())
            .select(RECORD_SCHEMA.names()).cast(RECORD_SCHEMA).sort("vehicle_id", "record_started_at"))


def reconcile_with_records(sessions: pl.DataFrame, records: pl.DataFrame) -> pl.DataFrame:
    """`sessions` (vehicle_id, plug_id, plugged_in_at, unplugged_at, energy_added_kwh,
    energy_source, energy_low_kwh, energy_high_kwh, avg_power_kw, power_source,
    charge_start_estimated_at, charge_end_estimated_at) with `charge_record_id`,
    `charge_record_energy_kwh` and `energy_vs_record_pct`, and SoC-based energy corrected."""
    key = ["vehicle_id", "plug_id"]
    window_start, window_end = pl.col("plugged_in_at"), pl.col("unplugged_at")
    overlap = (pl.min_horizontal(window_end, "record_ended_at") - pl.max_horizontal(window_start, "record_started_at"))
    pairs = (sessions.select(*key, "plugged_in_at", "unplugged_at")
             .join(records, on="vehicle_id")
             .with_columns(overlap.alias("overlap"))
             .filter(pl.col("overlap") > pl.duration(seconds=0)))
    best = (pairs.sort("overlap", descending=True)
            .unique(["vehicle_id", "record_id"], keep="first", maintain_order=True)  # a record's best session
            .unique(key, keep="first", maintain_order=True)  # a session's best record
            .select(*key, pl.col("record_id").alias("charge_record_id"),
                    pl.col("record_energy_kwh").alias("charge_record_energy_kwh")))
    c = pl.col
    joined = sessions.join(best, on=key, how="left")
    estimated = c("energy_source").is_null() | c("energy_source").str.starts_with("soc_x_")
    correct = estimated & c("charge_record_energy_kwh").is_not_null()
    hours = (c("charge_end_estimated_at") - c("charge_start_estimated_at")).dt.total_microseconds() / 1e6 / 3600.0
    corrected_energy = pl.when(correct).then(c("charge_record_energy_kwh")).otherwise(c("energy_added_kwh"))
    return joined.with_columns(
        # ours against the car's, before any correction: how far the estimate was
        pl.when(c("charge_record_energy_kwh") > 0)
        .then((c("energy_added_kwh") / c("charge_record_energy_kwh") - 1.0) * 100.0).alias("energy_vs_record_pct"),
        corrected_energy.alias("energy_added_kwh"),
        pl.when(correct).then(pl.lit("charge_record")).otherwise(c("energy_source")).alias("energy_source"),
        pl.when(correct).then(c("charge_record_energy_kwh")).otherwise(c("energy_low_kwh")).alias("energy_low_kwh"),
        pl.when(correct).then(c("charge_record_energy_kwh")).otherwise(c("energy_high_kwh")).alias("energy_high_kwh"),
        pl.when(correct & (c("power_source") == "energy_over_time") & (hours > 0))
        .then(c("charge_record_energy_kwh") / hours).otherwise(c("avg_power_kw")).alias("avg_power_kw"),
    )
