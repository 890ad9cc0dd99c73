"""The lake table of Smartcar connections: one row per vehicle the application has been
connected to. The pull writes it; the `marts.vehicle_connections` mart and the privacy
work (erasing a vehicle removes its row) read it through here."""

from __future__ import annotations

import polars as pl

from storage import tables
from storage.layout import SmartcarLayout

_TIME = pl.Datetime("us", "UTC")
CONNECTIONS_SCHEMA = pl.Schema({
    "vehicle_id": pl.String,
    "user_id": pl.String,
    "connection_id": pl.String,
    "status": pl.String,  # CONNECTED | DISCONNECTED
    "connected_at": _TIME,  # Smartcar's createdAt of the connection, else when first listed
    "last_seen_connected_at": _TIME,  # the last round that listed it
    "disconnected_at": _TIME,  # when the pull noticed it was gone (or its access revoked)
    "disconnect_reason": pl.String,  # UNLISTED, or the error's TYPE:CODE
    "make": pl.String,
    "model": pl.String,
    "year": pl.Int32,
    "mode": pl.String,
    "last_pulled_at": _TIME,
    "last_outcome": pl.String,  # SIGNALS, or the error's TYPE:CODE
    "budget_month": pl.String,  # YYYY-MM that calls_this_month counts
    "calls_this_month": pl.Int64,
    "blocked_until": _TIME,  # Smartcar asked us to wait (retry-after, request limit)
})


def read_connections(layout: SmartcarLayout) -> pl.DataFrame:
    return tables.scan(layout.connections_table, CONNECTIONS_SCHEMA).collect().cast(dict(CONNECTIONS_SCHEMA))


def write_connections(layout: SmartcarLayout, frame: pl.DataFrame) -> None:
    """The whole table, replaced in one commit (a row per vehicle: it stays small)."""
    tables.overwrite(layout.connections_table,
                     frame.select(CONNECTIONS_SCHEMA.names()).cast(dict(CONNECTIONS_SCHEMA)).sort("vehicle_id"))
