"""The data dictionary (assets/marts/columns.toml) is where people look: every mart column
has a description, in DuckDB's catalog, in Dagster's column schemas and in the README."""

import re
from pathlib import Path

import duckdb
import pytest
from conftest import build
from deliveries import delivery, odometer, write_landing

from assets.marts.dictionary import dictionary
from pipelines.definitions import defs

README = (Path(__file__).parents[1] / "README.md").read_text()


def readme_section(table: str) -> str:
    """The README text under the heading that names `marts.<table>` first, to the next heading."""
    match = re.search(rf"^#+ `marts\.{table}[`(].*?$(.*?)(?=^#)", README, flags=re.M | re.S)
    assert match, f"no README heading for marts.{table}"
    return match.group(1)


def backticked_names(text: str) -> set[str]:
    return {name for span in re.findall(r"`([^`]+)`", text) for name in re.split(r"[,\s]+", span) if name}


@pytest.fixture(scope="module")
def catalog(default_fleet) -> dict[str, dict[str, str]]:
    with duckdb.connect(str(default_fleet / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT table_name, column_name, comment FROM duckdb_columns() "
                           "WHERE schema_name = 'marts'").fetchall()
    tables: dict[str, dict[str, str]] = {}
    for table, column, comment in rows:
        tables.setdefault(table, {})[column] = comment
    return tables


def test_every_mart_column_is_in_the_dictionary_and_nothing_else(catalog):
    assert {t: set(c) for t, c in catalog.items()} == {t: set(c) for t, c in dictionary().items()}


def test_duckdb_carries_every_description_as_a_column_comment(catalog):
    for table, columns in catalog.items():
        for column, comment in columns.items():
            assert comment == dictionary()[table][column].description, f"{table}.{column}"


def test_units_are_named_where_the_column_name_says_one():
    for table, columns in dictionary().items():
        for column in columns.values():
            for suffix, unit in (("_km", "km"), ("_kwh", "kWh"), ("_kw", "kW"), ("_pct", "percent"), ("_min", "min")):
                if column.name.endswith(suffix):
                    assert column.unit == unit, f"{table}.{column.name}"


def test_the_readme_describes_every_column_under_its_mart():
    missing = {table: sorted(set(columns) - backticked_names(readme_section(table)))
               for table, columns in dictionary().items()}
    assert {t: m for t, m in missing.items() if m} == {}


def test_dagster_shows_the_column_schema_before_and_after_a_build(data_dir):
    specs = {key.to_user_string(): spec.metadata for a in defs.assets for key, spec in a.specs_by_key.items()}
    assert [c.name for c in specs["marts/daily_mileage"]["dagster/column_schema"].columns] == \
        list(dictionary()["daily_mileage"])
    write_landing(data_dir / "landing" / "a.ndjson", [
        delivery(f"e{i}", "v1", [odometer(1000 + 10 * i, f"2026-09-0{i + 1}T08:00:00Z")]) for i in range(3)])
    report = build(data_dir)
    schema = report.metadata["marts/daily_mileage"]["dagster/column_schema"]
    assert {c.name: (c.type, c.description) for c in schema.columns}["distance_km"] == (
        "DOUBLE", dictionary()["daily_mileage"]["distance_km"].description)


def test_the_readme_check_finds_a_column_it_does_not_describe():
    assert "vehicle_id" in backticked_names("`vehicle_id`, `day` | the vehicle")
    assert "spike_readings" not in backticked_names(readme_section("vehicles"))
