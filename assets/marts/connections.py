"""`marts.vehicle_connections`: which vehicles are connected to the Smartcar application,
since when, and which disconnected (and when the pull noticed), from the pull's connection
records in the lake."""

import dagster as dg

from assets.marts.protocol import Built, MartBuild, mart
from storage.connections import read_connections
from storage.layout import SmartcarLayout

VEHICLE_CONNECTIONS_COLUMNS = ["vehicle_id", "user_id", "status", "connected_at", "last_seen_connected_at",
                               "disconnected_at", "disconnect_reason", "make", "model", "year", "last_pulled_at",
                               "last_outcome"]


@mart(grain=("vehicle_id",), deps=[dg.AssetKey("smartcar_pull")], kinds=("polars", "duckdb"))
def vehicle_connections(build: MartBuild) -> Built:
    """One row per vehicle ever connected to the Smartcar application: user, status
    (CONNECTED, DISCONNECTED), connected since, last seen connected, disconnected at."""
    frame = read_connections(SmartcarLayout(build.lake)).select(VEHICLE_CONNECTIONS_COLUMNS).sort("vehicle_id")
    return Built(frame, {"connected": int((frame["status"] == "CONNECTED").sum())})
