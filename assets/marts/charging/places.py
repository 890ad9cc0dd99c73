"""Where a session happened, as a location type and a coarse area, never coordinates.

Each session's position is the median of the location readings while it was plugged in
(the median shrugs off GPS noise), snapped to a place: a grid cell of `PLACE_CELL_DEG`
degrees (about 550 m north-south). Places are worked out per vehicle and never leave this
module; the marts carry only the location type and the coarse `area` (a cell of
`AREA_CELL_DEG` degrees, about 11 km).

- `home`: the vehicle's place with the most plugged-in hours overnight (22:00 to 06:00
  local), at least `HOME_MIN_NIGHT_H` of them.
- `work`: another place where the car charged on weekdays between 08:00 and 18:00 local on
  at least `WORK_MIN_DAYS` different days (AC sessions only: a fast charger is public),
  the one with the most such hours.
- `public`: any other place. `unknown`: no location reading while plugged in.
"""

from __future__ import annotations

import polars as pl

from assets.marts.charging.sessions import _series, readings_in_sessions
from assets.marts.charging.time_of_use import spread, with_local_time

PLACE_CELL_DEG = 0.005
AREA_CELL_DEG = 0.1
NIGHT_HOURS = (22, 23, 0, 1, 2, 3, 4, 5)
WORK_HOURS = tuple(range(8, 18))
HOME_MIN_NIGHT_H = 1.0
WORK_MIN_DAYS = 2


def _cell(column: str, size: float) -> pl.Expr:
    return (pl.col(column) / size).floor().cast(pl.Int64)


def session_places(distinct: pl.DataFrame, sessions: pl.DataFrame) -> pl.DataFrame:
    """vehicle_id, plug_id, place (an opaque cell key) and area ('lat,lon' of the coarse
    cell's south-west corner) of each session that has a location reading while plugged in
    (or within 10 minutes after: some makes time-stamp location when it was retrieved)."""
    key = ["vehicle_id", "plug_id"]
    positions = [
        readings_in_sessions(_series(distinct, metric, name), sessions, "plugged_in_at", "unplugged_at", after="10m")
        .group_by(key).agg(pl.col(name).median())
        for metric, name in (("latitude_deg", "lat"), ("longitude_deg", "lon"))
    ]
    both = positions[0].join(positions[1], on=key)
    area_lat, area_lon = _cell("lat", AREA_CELL_DEG) * AREA_CELL_DEG, _cell("lon", AREA_CELL_DEG) * AREA_CELL_DEG
    return both.select(
        *key,
        pl.concat_str([_cell("lat", PLACE_CELL_DEG), _cell("lon", PLACE_CELL_DEG)], separator=":").alias("place"),
        pl.concat_str([area_lat.round(1).cast(pl.String), area_lon.round(1).cast(pl.String)], separator=",")
        .alias("area"),
    )


def location_types(sessions: pl.DataFrame, timezone: str) -> pl.DataFrame:
    """`sessions` has vehicle_id, plug_id, place, plugged_in_at, unplugged_by, is_dc_fast;
    returns vehicle_id, plug_id, location_type. A plug-in counts until the reading that no
    longer shows it (`unplugged_by`): a car plugged in overnight may sleep without a word."""
    key = ["vehicle_id", "plug_id"]
    located = sessions.filter(pl.col("place").is_not_null())
    hours = with_local_time(spread(located.select(*key, "place", "is_dc_fast", "plugged_in_at", "unplugged_by"),
                                   "plugged_in_at", "unplugged_by", every="1h"), "bucket", timezone)
    night = hours.filter(pl.col("local_hour").is_in(NIGHT_HOURS)).group_by("vehicle_id", "place").agg(
        pl.col("overlap_h").sum().alias("night_h"))
    home = (night.filter(pl.col("night_h") >= HOME_MIN_NIGHT_H)
            .sort("vehicle_id", "night_h", "place", descending=[False, True, False])
            .group_by("vehicle_id", maintain_order=True).first()
            .select("vehicle_id", pl.col("place").alias("home_place")))
    work = (hours.filter(pl.col("local_hour").is_in(WORK_HOURS) & (pl.col("day_type") == "weekday")
                         & ~pl.col("is_dc_fast"))
            .join(home, on="vehicle_id", how="left")
            .filter(pl.col("home_place").is_null() | (pl.col("place") != pl.col("home_place")))
            .group_by("vehicle_id", "place")
            .agg(pl.col("overlap_h").sum().alias("work_h"), pl.col("local_date").n_unique().alias("days"))
            .filter(pl.col("days") >= WORK_MIN_DAYS)
            .sort("vehicle_id", "work_h", "place", descending=[False, True, False])
            .group_by("vehicle_id", maintain_order=True).first()
            .select("vehicle_id", pl.col("place").alias("work_place")))
    typed = (sessions.join(home, on="vehicle_id", how="left").join(work, on="vehicle_id", how="left")
             .with_columns(pl.when(pl.col("place").is_null()).then(pl.lit("unknown"))
                           .when(pl.col("place") == pl.col("home_place")).then(pl.lit("home"))
                           .when(pl.col("place") == pl.col("work_place")).then(pl.lit("work"))
                           .otherwise(pl.lit("public")).alias("location_type")))
    return typed.select(*key, "location_type")
