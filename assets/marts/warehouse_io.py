"""How mart assets read the lake and write the warehouse.

The lake's committed Parquet files are exposed to DuckDB as connection-local views (Arrow
datasets, so DuckDB pushes projections and filters into the scan) under the names the mart
SQL uses. Each mart is replaced whole inside one transaction: a reader sees the old table
or the new one, never a half-built one.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pyarrow.dataset as ds

from assets.marts.dictionary import column_schema, comment_columns
from assets.metadata import markdown_preview
from assets.normalize import normalize_signals
from assets.parsing import FILE_QUARANTINE_SCHEMA, empty_batch
from storage.layout import lake_files
from storage.resources import LakeResource

SQL_DIR = Path(__file__).parent / "sql"
MART_SCHEMA = "marts"


@cache
def _empty_tables() -> dict[str, pl.DataFrame]:
    batch = empty_batch()
    normalized = normalize_signals(batch.signals)
    return {
        "deliveries": batch.deliveries, "duplicates": batch.duplicates,
        "quarantined_lines": batch.quarantine, "quarantined_files": pl.DataFrame(schema=FILE_QUARANTINE_SCHEMA),
        "raw_vehicle_errors": batch.vehicle_errors,
        "readings": normalized.readings, "signal_errors": normalized.signal_errors,
        "quarantined_signals": normalized.quarantine,
    }


def attach_lake(con: duckdb.DuckDBPyConnection, lake: LakeResource) -> None:
    """Register the lake's tables on this connection (temporary: nothing of the lake's
    paths is stored in the warehouse)."""
    for name, files in lake_files(lake).items():
        if files:
            con.register(name, ds.dataset([str(f) for f in files], format="parquet",
                                          schema=_empty_tables()[name].to_arrow().schema))
        else:
            con.register(name, _empty_tables()[name])


def sql(name: str, folder: Path = SQL_DIR) -> str:
    """The SELECT in `<folder>/<name>.sql` (each domain keeps its SQL beside its assets)."""
    return (folder / f"{name}.sql").read_text()


def replace_table(con: duckdb.DuckDBPyConnection, table: str, select_sql: str, params: list | None = None) -> int:
    """Replace `marts.<table>` with the result of a SELECT, atomically. Returns its row count."""
    # DuckDB wants every result consumed before the next statement on a connection.
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {MART_SCHEMA}").fetchall()
    con.execute("BEGIN TRANSACTION").fetchall()
    try:
        con.execute(f"CREATE OR REPLACE TABLE {MART_SCHEMA}.{table} AS {select_sql}", params or []).fetchall()
        comment_columns(con, MART_SCHEMA, table)
        con.execute("COMMIT").fetchall()
    except BaseException:
        con.execute("ROLLBACK").fetchall()
        raise
    return con.sql(f"SELECT count(*) FROM {MART_SCHEMA}.{table}").fetchall()[0][0]


def replace_table_from_frame(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> int:
    """Replace `marts.<table>` with a frame's rows, in the frame's order, atomically."""
    view = f"{table}_frame"
    con.register(view, frame)
    try:
        return replace_table(con, table, f"SELECT * FROM {view}")
    finally:
        con.unregister(view)


def mart_result(con: duckdb.DuckDBPyConnection, table: str, rows: int, **metadata) -> dg.MaterializeResult:
    preview = con.sql(f"SELECT * FROM {MART_SCHEMA}.{table} LIMIT 5").pl()
    return dg.MaterializeResult(metadata={
        "dagster/row_count": rows, "table": f"{MART_SCHEMA}.{table}",
        "preview": dg.MetadataValue.md(markdown_preview(preview)),
        "dagster/column_schema": column_schema(con, MART_SCHEMA, table), **metadata,
    })
