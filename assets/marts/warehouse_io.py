"""How mart assets read the lake and write the warehouse.

The lake's Delta tables are exposed to DuckDB as connection-local views of their current
versions (the data files their logs list, `tables.relation`; DuckDB's own delta extension
cannot be installed offline) under the names the mart SQL uses, and to Polars as lazy
scans. A mart is replaced whole, or for the vehicles new data touched, inside one
transaction, or built in batches into a staging table (`staging_name`) that then replaces
it in one: a reader sees the old table or the new one, never a half-built one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl

from assets.marts.dictionary import column_schema, comment_columns
from assets.metadata import markdown_preview
from assets.normalize import normalize_signals
from assets.parsing import FILE_QUARANTINE_SCHEMA, empty_batch
from storage import tables
from storage.layout import ERASED_SCHEMA, RawLayout, ReadingsLayout
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
        "raw_vehicle_errors": batch.vehicle_errors, "erased_lines": ERASED_SCHEMA.to_frame(),
        "readings": normalized.readings, "signal_errors": normalized.signal_errors,
        "quarantined_signals": normalized.quarantine,
    }


# The lake's tables under the names the marts use: raw tables (committed rows only) by
# their RawLayout name, readings tables by their path.
_RAW = {"deliveries": "deliveries", "duplicates": "duplicates", "quarantined_lines": "quarantine",
        "quarantined_files": "quarantined_files", "raw_vehicle_errors": "vehicle_errors", "erased_lines": "erased"}
_BUILT = {"readings": "readings", "signal_errors": "signal_errors", "quarantined_signals": "quarantine/readings"}


def lake_scan(lake: LakeResource, name: str) -> pl.LazyFrame:
    """One of the lake's tables, by its mart name, as a lazy Polars scan of its current version."""
    schema = _empty_tables()[name].schema
    if name in _RAW:
        return RawLayout(lake).scan(_RAW[name], schema)
    return tables.scan(ReadingsLayout(lake).table(_BUILT[name]), schema).select(schema.names())


def attach_lake(con: duckdb.DuckDBPyConnection, lake: LakeResource) -> None:
    """Register the lake's tables on this connection (temporary: nothing of the lake's
    paths is stored in the warehouse)."""
    raw, built = RawLayout(lake), ReadingsLayout(lake)
    for name in _empty_tables():
        found = raw.relation(con, _RAW[name]) if name in _RAW else tables.relation(con, built.table(_BUILT[name]))
        con.register(name, found if found is not None else _empty_tables()[name])


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


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """One warehouse transaction: every statement inside commits together, or none does."""
    con.execute("BEGIN TRANSACTION").fetchall()
    try:
        yield
        con.execute("COMMIT").fetchall()
    except BaseException:
        con.execute("ROLLBACK").fetchall()
        raise


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Whether the warehouse holds `marts.<table>` (as this connection's transaction sees it)."""
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?",
                            [MART_SCHEMA, table]).fetchall()[0][0])


def write_table(con: duckdb.DuckDBPyConnection, table: str, select_sql: str, vehicles_view: str | None = None,
                window: tuple[str, str] | None = None) -> int:
    """Write a SELECT's rows to `marts.<table>`, inside the caller's transaction: the whole
    table replaced, or, given `vehicles_view` (a relation of `vehicle_id, since, since_day`),
    only the rows of those vehicles, with the SELECT's rows of those vehicles. `window`
    (a column of the table, and `since` or `since_day`) narrows that to each vehicle's rows
    from its `since` on (all of them where `since` is null). Returns the rows written."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {MART_SCHEMA}").fetchall()
    if vehicles_view is None or not table_exists(con, table):
        con.execute(f"CREATE OR REPLACE TABLE {MART_SCHEMA}.{table} AS {select_sql}").fetchall()
        comment_columns(con, MART_SCHEMA, table)
        return con.sql(f"SELECT count(*) FROM {MART_SCHEMA}.{table}").fetchall()[0][0]
    con.execute(f"DELETE FROM {MART_SCHEMA}.{table} r WHERE EXISTS (SELECT 1 FROM {vehicles_view} s "
                f"WHERE s.vehicle_id = r.vehicle_id{_within(window)})").fetchall()
    return add_rows(con, table, select_sql, vehicles_view, window)


def add_rows(con: duckdb.DuckDBPyConnection, table: str, select_sql: str, vehicles_view: str,
             window: tuple[str, str] | None = None) -> int:
    """Insert a SELECT's rows of the vehicles in `vehicles_view` (narrowed by `window`, as
    in `write_table`) into `marts.<table>`. Returns the rows written."""
    # The scope again on the rows written: a SELECT that yields other rows cannot duplicate them.
    written = con.execute(f"INSERT INTO {MART_SCHEMA}.{table} BY NAME SELECT r.* FROM ({select_sql}) r "
                          f"WHERE EXISTS (SELECT 1 FROM {vehicles_view} s WHERE s.vehicle_id = r.vehicle_id"
                          f"{_within(window)})").fetchall()
    return written[0][0] if written else 0


def _within(window: tuple[str, str] | None) -> str:
    return f" AND (s.since IS NULL OR r.{window[0]} >= s.{window[1]})" if window else ""


def staging_name(table: str) -> str:
    """The table a batched build of `marts.<table>` writes before it replaces the mart."""
    return f"_building_{table}"


def drop_staging(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Drop what an interrupted batched build of `marts.<table>` left."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {MART_SCHEMA}").fetchall()
    con.execute(f"DROP TABLE IF EXISTS {MART_SCHEMA}.{staging_name(table)}").fetchall()


def replace_with_staging(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Replace `marts.<table>` with its staging table, renamed (no copy), inside the caller's
    transaction."""
    con.execute(f"DROP TABLE IF EXISTS {MART_SCHEMA}.{table}").fetchall()
    con.execute(f"ALTER TABLE {MART_SCHEMA}.{staging_name(table)} RENAME TO {table}").fetchall()
    comment_columns(con, MART_SCHEMA, table)


def mart_result(con: duckdb.DuckDBPyConnection, table: str, rows: int, **metadata) -> dg.MaterializeResult:
    preview = con.sql(f"SELECT * FROM {MART_SCHEMA}.{table} LIMIT 5").pl()
    return dg.MaterializeResult(metadata={
        "dagster/row_count": rows, "table": f"{MART_SCHEMA}.{table}",
        "preview": dg.MetadataValue.md(markdown_preview(preview)),
        "dagster/column_schema": column_schema(con, MART_SCHEMA, table), **metadata,
    })
