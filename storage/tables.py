"""The lake's tables: Delta Lake tables (delta-rs), so that every write is one atomic commit
to the table's transaction log (`_delta_log/`), readers see one committed version or the
next and never a half-written one, and the same code runs on S3-compatible object storage.

Writes either append, or replace the rows a predicate selects (a day of a day-partitioned
table, the rows of some keys) in the same commit that adds the new rows. A commit may carry
an application's version (Delta's transaction identifiers, `version_of`), which says which
of its units of work the table already holds. The data files a version no longer uses are
deleted by `vacuum` once they are older than the lake's retention, so that nothing removed
from a table stays recoverable for longer than that.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
from deltalake import ColumnProperties, CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError

# Row groups of at most 128 Ki rows: the writer buffers one before encoding it (a bound on
# its memory), and a table sorted by vehicle keeps row-group statistics that skip vehicles.
# Long text (a delivery's line, a signal's body) is never filtered on: written plain, without
# the dictionary each page would try first, and without statistics, so that no part of it
# sits in the transaction log as a column's minimum or maximum.
_LONG_TEXT = ColumnProperties(dictionary_enabled=False, statistics_enabled="NONE")
_WRITER = WriterProperties(compression="ZSTD", max_row_group_size=128 * 1024,
                           column_properties={column: _LONG_TEXT for column in ("payload", "body", "raw_text")})


def exists(path: Path) -> bool:
    return DeltaTable.is_deltatable(str(path))


def open_table(path: Path) -> DeltaTable | None:
    return DeltaTable(str(path)) if exists(path) else None


# One read handle per table and process. Opening a table replays its log (15-30 ms), while
# bringing an open one up to date reads only the commits since (about 3 ms); every mart
# step lists every lake table's files. A table is known by its first commit file, so that
# one deleted and created again at the same path is opened anew.
@dataclass
class _Reader:
    identity: tuple[int, int]
    table: DeltaTable
    rows: tuple[int, pl.DataFrame] | None = None  # `read_small`'s rows, with their version


_readers: dict[Path, _Reader] = {}
# Held while a handle is brought up to date or read: a process's threads (ingest's writer,
# the readings' validation, Dagster's) share the handles, and a delta-rs table serves one
# caller at a time.
_readers_lock = threading.RLock()


def _reader(path: Path) -> _Reader | None:
    """The process's read handle on the table, at its latest version; None when the table
    was never written, or its first commits were cleaned up behind a checkpoint (then it
    cannot be told apart from another table at the path, and is not kept)."""
    try:
        first = (path / "_delta_log" / f"{0:020}.json").stat()
    except OSError:
        return None
    identity = (first.st_ino, first.st_mtime_ns)
    with _readers_lock:
        known = _readers.get(path)
        if known is not None and known.identity == identity:
            known.table.update_incremental()
            return known
        table = open_table(path)
        if table is None:
            return None
        reader = _readers[path] = _Reader(identity, table)
        return reader


@contextmanager
def latest(path: Path) -> Iterator[DeltaTable | None]:
    """The table at its latest version, to read within the block (not to write: writers
    open their own)."""
    with _readers_lock:
        reader = _reader(path)
        yield reader.table if reader is not None else open_table(path)


def _arrow(frame: pl.DataFrame):
    # Plain (not view or large) Arrow types, so that every table keeps one schema however
    # the frame was built.
    return frame.to_arrow(compat_level=pl.CompatLevel.oldest())


def append(path: Path, frame: pl.DataFrame, partition_by: list[str] | None = None) -> None:
    """Add the frame's rows to the table (created on first write), in one commit. Columns
    the table does not have yet are added to it (older rows read them as null), so that a
    lake written by an older version takes a new column."""
    path.mkdir(parents=True, exist_ok=True)
    table = open_table(path)
    new_columns = table is not None and bool(set(frame.columns) - {f.name for f in table.schema().fields})
    write_deltalake(str(path), _arrow(frame), mode="append", partition_by=partition_by, writer_properties=_WRITER,
                    schema_mode="merge" if new_columns else None)


def replace(path: Path, frame: pl.DataFrame, predicate: str | None, partition_by: list[str] | None = None,
            version: tuple[str, int] | None = None) -> None:
    """Replace the rows `predicate` selects (SQL over the table's columns) with the frame's
    rows, which must all match it, in one commit. On a partition column this is a partition
    overwrite: only that partition's files are touched."""
    replace_in_parts(path, [frame], frame.schema, predicate, partition_by, version)


def replace_in_parts(path: Path, parts: Iterable[pl.DataFrame], schema: pl.Schema, predicate: str | None,
                     partition_by: list[str] | None = None, version: tuple[str, int] | None = None) -> None:
    """`replace` with rows that arrive in parts (each of `schema`), streamed into the one
    commit: only a part and the writer's row group are in memory at once. Nothing is
    committed if producing a part raises. With no `predicate`, the rows are appended.
    `version` (an application id and its version) is recorded in the commit (`version_of`)."""
    arrow_schema = _arrow(schema.to_frame()).schema
    _create(path, arrow_schema, partition_by)
    stream = pa.RecordBatchReader.from_batches(
        arrow_schema, (batch for part in parts for batch in _arrow(part.select(schema.names()).cast(schema)).to_batches()))
    commit = CommitProperties(app_transactions=[Transaction(*version)]) if version else None
    write_deltalake(str(path), stream, mode="overwrite" if predicate else "append", predicate=predicate,
                    writer_properties=_WRITER, commit_properties=commit)


def version_of(path: Path, app_id: str) -> int | None:
    """The last version of `app_id` that a commit to the table recorded (None: none did)."""
    table = open_table(path)
    return table.transaction_version(app_id) if table is not None else None


def _create(path: Path, schema: pa.Schema, partition_by: list[str] | None) -> None:
    """The table, empty, unless it exists. Processes that build different partitions may
    race to create it: the one whose commit loses finds it created."""
    if exists(path):
        return
    path.mkdir(parents=True, exist_ok=True)
    try:
        DeltaTable.create(str(path), schema, mode="ignore", partition_by=partition_by)
    except (CommitFailedError, DeltaError):
        if not exists(path):
            raise


def overwrite(path: Path, frame: pl.DataFrame) -> None:
    """Replace the whole table with the frame, in one commit (a small table)."""
    path.mkdir(parents=True, exist_ok=True)
    write_deltalake(str(path), _arrow(frame), mode="overwrite", writer_properties=_WRITER)


def delete(path: Path, predicate: str) -> None:
    if (table := open_table(path)) is not None:
        table.delete(predicate)


def scan(path: Path, schema: pl.Schema) -> pl.LazyFrame:
    """The table's current version, lazily (filters on partition columns and statistics
    prune files); an empty frame of `schema` when the table was never written."""
    if not exists(path):
        return schema.to_frame().lazy()
    return pl.scan_delta(str(path))


def read_small(path: Path, schema: pl.Schema) -> pl.DataFrame:
    """A small table's rows at its latest version (an empty frame of `schema` when it was
    never written), read once per version: the lake's bookkeeping tables (ingest groups,
    built days) are read by every step, and most steps write none of them."""
    with _readers_lock:
        reader = _reader(path)
        if reader is None:
            table = open_table(path)
            return pl.scan_delta(table).collect() if table is not None else schema.to_frame()
        version = reader.table.version()
        rows = reader.rows
        if rows is None or rows[0] != version:
            rows = reader.rows = (version, pl.scan_delta(reader.table).collect())
        return rows[1]


def relation(con: duckdb.DuckDBPyConnection, path: Path) -> duckdb.DuckDBPyRelation | None:
    """The table's current version as a DuckDB relation; None when it was never written or
    holds no data file. A local table's data files are read by DuckDB's own Parquet reader
    (its partition values from the file paths, columns added later null in older files),
    which keeps within the connection's memory limit and pushes filters into row groups; an
    Arrow dataset's scan, which it takes on object storage, buffers outside that limit (3.1
    GB against 0.4 GB for `marts.vehicles` at 1,000 vehicles × 30 days)."""
    with latest(path) as table:
        files = table.file_uris() if table is not None else []
        if not files:
            return None
        if any("://" in uri for uri in files):
            return con.from_arrow(table.to_pyarrow_dataset())
        partitioned = bool(table.metadata().partition_columns)
    return con.read_parquet(files, hive_partitioning=partitioned, union_by_name=True)


def files(path: Path) -> pl.DataFrame:
    """The table's current data files with their statistics (`num_records`, `partition.*`,
    `min.*`, `max.*`): what can be known without reading data."""
    with latest(path) as table:
        if table is None:
            return pl.DataFrame(schema={"path": pl.String, "num_records": pl.Int64})
        return pl.DataFrame(table.get_add_actions(flatten=True))


def vacuum(path: Path, retention_hours: float) -> int:
    """Delete the data files no version younger than `retention_hours` uses. Returns how
    many were deleted."""
    table = open_table(path)
    if table is None:
        return 0
    # delta-rs takes whole hours; a fraction rounds down, so that 0 means "keep none".
    return len(table.vacuum(retention_hours=int(retention_hours), enforce_retention_duration=False, dry_run=False))


def update(path: Path, updates: dict[str, str], predicate: str) -> int:
    """Set columns to SQL expressions (over the row's columns) in the rows `predicate`
    selects, in one commit; none when no row matches. Returns how many rows changed."""
    table = open_table(path)
    if table is None:
        return 0
    return table.update(updates=updates, predicate=predicate)["num_updated_rows"]


def update_matching(path: Path, frame: pl.DataFrame, keys: list[str], columns: list[str]) -> int:
    """Set `columns` of the rows whose `keys` match a row of `frame` to that row's values, in
    one commit (a merge: the frame's values are data, never SQL). Returns how many rows
    changed."""
    table = open_table(path)
    if table is None or frame.is_empty():
        return 0
    on = " AND ".join(f't."{key}" = s."{key}"' for key in keys)
    merged = (table.merge(_arrow(frame.select(*keys, *columns)), predicate=on, source_alias="s", target_alias="t")
              .when_matched_update(updates={column: f's."{column}"' for column in columns}).execute())
    return merged["num_target_rows_updated"]


def sql_text(value: str) -> str:
    """A string literal for a predicate (delta-rs parses SQL: a quote is doubled), so that
    no id can change what a predicate means."""
    return "'" + value.replace("'", "''") + "'"


def delete_rows(path: Path, predicate: str) -> dict:
    """Delete the rows `predicate` selects, in one commit; delta-rs rewrites only the files
    that hold such rows (found by statistics, then by scanning). Returns how many rows were
    deleted and how many files were removed and added."""
    table = open_table(path)
    if table is None:
        return {"rows": 0, "files_removed": 0, "files_added": 0}
    metrics = table.delete(predicate)
    return {"rows": metrics["num_deleted_rows"], "files_removed": metrics["num_removed_files"],
            "files_added": metrics["num_added_files"]}


def forget_history(path: Path, retention_hours: float = 0) -> int:
    """Keep no version of the table older than `retention_hours` (0: only the current one):
    their data files are deleted (vacuum), and so are the transaction log's entries before a
    new checkpoint, since old commits hold removed files' statistics (each column's minimum
    and maximum) and the predicates of deletes. Returns the data files deleted."""
    table = open_table(path)
    if table is None:
        return 0
    hours = int(retention_hours)  # whole hours, as vacuum takes them
    removed = len(table.vacuum(retention_hours=hours, enforce_retention_duration=False, dry_run=False))
    # A commit after the last change, so that the checkpoint is newer than the change's own
    # commit and log cleanup (entries older than the retention, before the checkpoint) can
    # remove that too.
    table.alter.set_table_properties({"delta.logRetentionDuration": f"interval {hours} hours"},
                                     raise_if_not_exists=False)
    table.create_checkpoint()
    table.cleanup_metadata()
    return removed
