"""The `fleetlake maintenance` report: what needs attention, soonest first, as a terminal table."""

from __future__ import annotations

import duckdb
import polars as pl

from assets.marts.maintenance.rules import URGENCIES
from storage.errors import UserError
from storage.resources import WarehouseResource


def needing_attention(forecast: pl.DataFrame, within_days: float) -> pl.DataFrame:
    """What needs attention within `within_days` of each vehicle's as-of time: due by then
    (or past due), or a finding (leak, falling 12 V battery, active codes) whatever its due
    date; soonest first."""
    return (
        forecast.filter((pl.col("days_until_due") <= within_days) | pl.col("finding").is_not_null()
                        | (pl.col("urgency") == "PAST_DUE"))
        .with_columns(rank=pl.col("urgency").replace_strict(URGENCIES, list(range(len(URGENCIES)))))
        .sort("predicted_due_at", "rank", "vehicle_id", "component", nulls_last=True)
        .drop("rank")
    )


def read_forecast(warehouse: WarehouseResource) -> pl.DataFrame:
    """`marts.maintenance_forecast` from the warehouse (a WarehouseResource), read-only.
    Raises UserError with what to do when there is no warehouse or no forecast yet."""
    with warehouse.connect(read_only=True) as con:
        try:
            return con.sql("SELECT * FROM marts.maintenance_forecast").pl()
        except duckdb.CatalogException:
            raise UserError(f"no marts.maintenance_forecast in {warehouse.path}: "
                                    "run `fleetlake run` first") from None


COUNTED = {"codes"}  # units of things counted, shown as whole numbers


def attention_table(rows: pl.DataFrame) -> str:
    """Rows of the forecast as an aligned text table for the terminal."""
    def fmt(value, pattern="{}"):
        return "" if value is None else pattern.format(value)

    header = ["due", "urgency", "vehicle", "component", "now", "per day", "due km", "finding / detail"]
    lines = [[fmt(r["predicted_due_date"]), r["urgency"], r["vehicle_id"], r["component"],
              f"{fmt(r['current_value'], '{:.0f}' if r['unit'] in COUNTED else '{:.1f}')} {r['unit']}".strip(), fmt(r["trend_per_day"], "{:+.2f}"),
              fmt(r["predicted_due_odometer_km"], "{:.0f}"),
              " ".join(filter(None, [r["finding"], r["detail"]]))]
             for r in rows.iter_rows(named=True)]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines)]
    return "\n".join("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip()
                     for line in [header, *lines])
