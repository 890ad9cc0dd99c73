"""The data dictionary (`columns.toml`): what each mart column means and its unit, as
DuckDB comments (written with the table, in its transaction) and Dagster column schemas."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import dagster as dg
import duckdb

DICTIONARY_FILE = Path(__file__).parent / "columns.toml"


@dataclass(frozen=True)
class Column:
    name: str
    text: str
    unit: str | None = None

    @property
    def description(self) -> str:
        return f"{self.text} [{self.unit}]" if self.unit else self.text


@cache
def dictionary() -> dict[str, dict[str, Column]]:
    """Table → column → its entry, in the order of the file."""
    raw = tomllib.loads(DICTIONARY_FILE.read_text(encoding="utf-8"))
    return {table: {name: Column(name, entry) if isinstance(entry, str) else Column(name, entry["text"], entry["unit"])
                    for name, entry in columns.items()}
            for table, columns in raw.items()}


def _literal(text: str) -> str:
    # COMMENT ON takes no parameters; the text is the dictionary's own, not data.
    return "'" + text.replace("'", "''") + "'"


def comment_columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> None:
    """Attach the dictionary's descriptions to `schema.table`'s columns."""
    entries = dictionary().get(table, {})
    for (name,) in con.execute("SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND table_name = ?",
                               [schema, table]).fetchall():
        if name in entries:
            quoted = '"' + name.replace('"', '""') + '"'
            con.execute(f"COMMENT ON COLUMN {schema}.{table}.{quoted} IS {_literal(entries[name].description)}").fetchall()


def column_schema(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> dg.TableSchema:
    """The table's columns as Dagster shows them: name, DuckDB type and description."""
    rows = con.execute("SELECT column_name, data_type, coalesce(comment, '') FROM duckdb_columns() "
                       "WHERE schema_name = ? AND table_name = ? ORDER BY column_index", [schema, table]).fetchall()
    return dg.TableSchema(columns=[dg.TableColumn(name, type_, description=text or None) for name, type_, text in rows])


def declared_schema(table: str) -> dg.TableSchema | None:
    """The table's columns from the dictionary alone (before it is first built)."""
    entries = dictionary().get(table)
    if not entries:
        return None
    return dg.TableSchema(columns=[dg.TableColumn(c.name, c.unit or "", description=c.description)
                                   for c in entries.values()])
