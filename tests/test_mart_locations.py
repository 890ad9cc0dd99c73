"""Marts that analysts read expose no position finer than the coarse area (DESIGN, Privacy):
every column of every table and view in schema `marts` is searched for the fleet's precise
coordinates, as numbers and inside text."""

import duckdb
import polars as pl
import pytest

from assets.location_coarsening import coarse_coordinate

# A value within this of one of the fleet's coordinates pins the car to about 100 m: far
# finer than the coarse area (0.1°). Medians and roundings of positions match too.
PINNED_DEG = 0.001
# A column exposes positions when most of its values pin one; a few values that happen to
# fall near a coordinate (a kW or kWh figure near 11.57 or 48.14) are not a position.
EXPOSING_SHARE = 0.5
ANY_VEHICLE = ""  # the rows of a mart without vehicle_id are compared with every vehicle's coordinates
NUMBER_IN_TEXT = r"-?\d{1,3}\.\d{3,}"  # a decimal with three or more decimals: finer than the area


def fleet_coordinates(readings: pl.DataFrame) -> pl.DataFrame:
    """vehicle_id, coordinate: every precise latitude and longitude the fleet reported."""
    return (readings.filter(pl.col("metric").is_in(["latitude_deg", "longitude_deg"]))
            .select("vehicle_id", pl.col("value").alias("coordinate")).unique())


def _coarse(values: pl.Expr) -> pl.Expr:
    """On the coarse grid: a cell's corner (what marts' `area` shows) or its centre (the lake)."""
    return ((values * 20).round(0) - values * 20).abs() < 1e-6


def pinned_rows(values: pl.DataFrame, coordinates: pl.DataFrame) -> set[int]:
    """The `row`s of `values` (row, vehicle_id, value) that lie within PINNED_DEG of a
    coordinate of their vehicle (of any vehicle when the row names none: '') and off the coarse grid."""
    values = values.drop_nulls("value").with_columns(pl.col("vehicle_id").fill_null(ANY_VEHICLE))
    if values.is_empty():
        return set()
    everyone = coordinates.with_columns(pl.lit(ANY_VEHICLE).alias("vehicle_id")).unique()
    candidates = pl.concat([coordinates, everyone]).sort("coordinate")
    nearest = values.sort("value").join_asof(
        candidates, left_on="value", right_on="coordinate", by="vehicle_id", strategy="nearest",
        check_sortedness=False)  # both sorted by value; within a vehicle too
    pinned = nearest.filter(((pl.col("value") - pl.col("coordinate")).abs() <= PINNED_DEG) & ~_coarse(pl.col("value")))
    return set(pinned.get_column("row"))


def exposing_columns(con: duckdb.DuckDBPyConnection, coordinates: pl.DataFrame) -> dict[str, float]:
    """`table.column` of every marts column whose values mostly pin a precise position, with
    the share of its values that do."""
    columns = con.execute("""
        SELECT table_name, column_name, data_type FROM information_schema.columns
        WHERE table_schema = 'marts' ORDER BY table_name, ordinal_position""").fetchall()
    with_vehicle = {t for t, c, _ in columns if c == "vehicle_id"}
    exposing = {}
    for table, column, data_type in columns:
        if data_type.startswith(("TIMESTAMP", "DATE", "TIME", "INTERVAL")):
            continue  # a time's seconds are no coordinate
        vehicle = '"vehicle_id"' if table in with_vehicle else f"'{ANY_VEHICLE}'"
        numeric = data_type in ("DOUBLE", "FLOAT", "REAL") or data_type.startswith("DECIMAL")
        as_type = "DOUBLE" if numeric else "VARCHAR"  # text, lists, structs: every number written in them
        rows = con.sql(f'SELECT {vehicle}::VARCHAR AS vehicle_id, "{column}"::{as_type} AS value '
                       f'FROM marts."{table}" WHERE "{column}" IS NOT NULL').pl().with_row_index("row")
        if rows.is_empty():
            continue
        values = rows if numeric else (
            rows.with_columns(pl.col("value").str.extract_all(NUMBER_IN_TEXT)).explode("value")
            .with_columns(pl.col("value").cast(pl.Float64)))
        share = len(pinned_rows(values, coordinates)) / rows.height
        if share >= EXPOSING_SHARE:
            exposing[f"{table}.{column}"] = round(share, 3)
    return exposing


@pytest.fixture(scope="module")
def positions(default_fleet):
    return (pl.read_delta(str(default_fleet / "lake" / "readings"), columns=["vehicle_id", "metric", "value"])
            .filter(pl.col("metric").is_in(["latitude_deg", "longitude_deg"])))


@pytest.fixture(scope="module")
def coordinates(positions):
    found = fleet_coordinates(positions)
    assert found.height > 1000  # the fleet drove around
    return found


def test_no_mart_column_holds_coordinates_finer_than_the_coarse_area(default_fleet, coordinates):
    with duckdb.connect(str(default_fleet / "warehouse.duckdb"), read_only=True) as con:
        tables = con.execute("SELECT count(DISTINCT table_name) FROM information_schema.columns "
                             "WHERE table_schema = 'marts'").fetchone()[0]
        assert tables >= 12  # every contract mart is searched
        assert exposing_columns(con, coordinates) == {}


def test_the_search_finds_a_position_however_a_mart_would_carry_it(default_fleet, positions, coordinates):
    """The search above can fail: a mart that carried the sessions' positions, as numbers, as
    medians, as text or rounded to 100 m, is caught; the coarse area and coarsened values are not."""
    with duckdb.connect(str(default_fleet / "warehouse.duckdb"), read_only=True) as source:
        sessions = source.sql("SELECT session_id, vehicle_id FROM marts.charging_sessions").pl()
    latitudes = positions.filter(pl.col("metric") == "latitude_deg").group_by("vehicle_id").agg(
        pl.col("value").median().alias("median"), pl.col("value").first().alias("one"))
    leaky = sessions.join(latitudes, on="vehicle_id").with_columns(
        pl.col("median").round(3).alias("rounded"),
        pl.format("near {}", pl.col("one")).alias("note"),
        pl.col("one").map_elements(coarse_coordinate, return_dtype=pl.Float64).alias("coarse"),
        (pl.col("one") / 0.1).floor().mul(0.1).round(1).cast(pl.String).alias("area"))
    con = duckdb.connect()
    con.execute("CREATE SCHEMA marts")
    con.register("leaky_frame", leaky)
    con.execute("CREATE TABLE marts.leaky AS SELECT * FROM leaky_frame")
    con.execute("CREATE TABLE marts.fleet_wide AS SELECT * EXCLUDE (session_id, vehicle_id) FROM leaky_frame")
    found = exposing_columns(con, coordinates)
    assert set(found) == {f"{table}.{column}" for table in ("leaky", "fleet_wide")
                          for column in ("one", "note", "rounded", "median")}  # not coarse, not area
