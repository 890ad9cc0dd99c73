"""`marts.vehicle_connections`: which vehicles are connected to the Smartcar application,
since when, and which disconnected (and when the pull noticed), from the pull's connection
records in the lake."""

import dagster as dg

from assets.marts.core import MART_POOL
from assets.marts.warehouse_io import mart_result, replace_table
from storage.connections import read_connections
from storage.layout import SmartcarLayout
from storage.resources import LakeResource, WarehouseResource

VEHICLE_CONNECTIONS_SQL = """
SELECT vehicle_id, user_id, status, connected_at, last_seen_connected_at, disconnected_at,
       disconnect_reason, make, model, year, last_pulled_at, last_outcome
FROM connections
ORDER BY vehicle_id
"""


@dg.asset(key_prefix="marts", group_name="marts", pool=MART_POOL, kinds={"duckdb"},
          deps=[dg.AssetKey("smartcar_pull")],
          description="One row per vehicle ever connected to the Smartcar application: user, status "
                      "(CONNECTED, DISCONNECTED), connected since, last seen connected, disconnected at.")
def vehicle_connections(lake: LakeResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    frame = read_connections(SmartcarLayout(lake))
    with warehouse.connect() as con:
        con.register("connections", frame)
        rows = replace_table(con, "vehicle_connections", VEHICLE_CONNECTIONS_SQL)
        return mart_result(con, "vehicle_connections", rows,
                           connected=int((frame["status"] == "CONNECTED").sum()))
