"""Service records as independent evidence for mileage: a dealer wrote down the odometer
when it serviced the car, and that figure does not come through the car's own telematics.

Each record with a time and an odometer is set beside what the car's own valid odometer
readings say at that moment (interpolated between the valid readings either side of it, when
no gap lies between them). A record far from it is a sign that one of the two is wrong
(a rollback after the service, readings of another car, a mistyped record): the mileage
statement of its period needs review.
"""

from __future__ import annotations

import polars as pl

from assets.marts.mileage.odometer import GAP_HOURS, TIME

# The two agree within this share of the odometer, or this many km if more: a service record
# is written at the desk (rounded, miles converted, the car driven in and out of the bay).
SERVICE_TOLERANCE_SHARE = 0.005
SERVICE_TOLERANCE_KM = 25.0

SERVICE_RECORD_SCHEMA = {
    "vehicle_id": pl.String, "record_id": pl.String, "serviced_at": TIME, "service_odometer_km": pl.Float64,
    "car_odometer_km": pl.Float64, "difference_km": pl.Float64, "odometer_check": pl.String,
}


def service_records(readings: pl.DataFrame) -> pl.DataFrame:
    """The distinct service records with an odometer (`service_odometer_km` readings: the record
    id as component, its time as noted_at); one per vehicle, record and time."""
    return (readings.filter((pl.col("metric") == "service_odometer_km") & pl.col("noted_at").is_not_null())
            .sort("delivered_at")
            .unique(["vehicle_id", "component", "noted_at"], keep="first", maintain_order=True)
            .select("vehicle_id", pl.col("component").alias("record_id"), pl.col("noted_at").alias("serviced_at"),
                    pl.col("value").alias("service_odometer_km"))
            .sort("vehicle_id", "serviced_at"))


def check_service_odometers(records: pl.DataFrame, assessed: pl.DataFrame) -> pl.DataFrame:
    """Each record beside the car's odometer at its time (`assessed`: marts.odometer_readings):
    `odometer_check` is `agrees` (within the tolerance), `disagrees`, or `unverifiable` (no
    valid readings on both sides of it, or more than the gap length between them)."""
    # both sides in UTC: the records come from the lake (UTC), the readings from DuckDB (Etc/UTC)
    valid = (assessed.filter(pl.col("status") != "spike")
             .select("vehicle_id", pl.col("reading_time").dt.convert_time_zone("UTC"), "odometer_km")
             .sort("reading_time"))
    by_time = records.with_columns(pl.col("serviced_at").dt.convert_time_zone("UTC")).sort("serviced_at")
    before = by_time.join_asof(valid.rename({"reading_time": "before_at", "odometer_km": "before_km"}),
                               left_on="serviced_at", right_on="before_at", by="vehicle_id", strategy="backward",
                               check_sortedness=False)
    both = before.join_asof(valid.rename({"reading_time": "after_at", "odometer_km": "after_km"}),
                            left_on="serviced_at", right_on="after_at", by="vehicle_id", strategy="forward",
                            check_sortedness=False)
    c = pl.col
    span = (c("after_at") - c("before_at")).dt.total_microseconds()
    share = pl.when(span > 0).then((c("serviced_at") - c("before_at")).dt.total_microseconds() / span).otherwise(0.0)
    # across a gap (more than 72 h without a reading) the car's odometer in between is unknown
    near = (c("after_at") - c("before_at")) <= pl.duration(hours=GAP_HOURS)
    car_km = pl.when(near).then(c("before_km") + share * (c("after_km") - c("before_km")))
    tolerance = pl.max_horizontal(c("service_odometer_km") * SERVICE_TOLERANCE_SHARE, pl.lit(SERVICE_TOLERANCE_KM))
    return (both.with_columns(car_km.alias("car_odometer_km"))
            .with_columns((c("service_odometer_km") - c("car_odometer_km")).alias("difference_km"))
            .with_columns(pl.when(c("difference_km").is_null()).then(pl.lit("unverifiable"))
                          .when(c("difference_km").abs() <= tolerance).then(pl.lit("agrees"))
                          .otherwise(pl.lit("disagrees")).alias("odometer_check"))
            .select(list(SERVICE_RECORD_SCHEMA)).sort("vehicle_id", "serviced_at"))
