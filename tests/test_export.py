"""The owner's copy (issue 14, point 9): `fleetlake export` writes everything the data
directory holds about a vehicle into one archive of open formats, with a README."""

import gzip
import io
import zipfile

import duckdb
import polars as pl
from test_erasure import copy, fleet  # noqa: F401  (fixtures: the built fleet, copied)

from pipelines.cli import main
from storage.erasure import belongs_to, search_terms


def _landing_lines(landing, vehicle, texts) -> list[bytes]:
    rule = belongs_to({vehicle}, set(), search_terms(texts))
    found = []
    for f in sorted(p for p in landing.rglob("*.ndjson*") if p.is_file()):
        data = gzip.decompress(f.read_bytes()) if f.name.endswith(".gz") else f.read_bytes()
        found += [line for line in data.splitlines() if line and rule(line)]
    return found


def test_the_export_holds_every_record_the_erasure_scan_finds(fleet, copy, tmp_path, capsys):  # noqa: F811
    target, texts = fleet["target"], fleet["texts"]
    out = tmp_path / "owner.zip"
    assert main(["--data-dir", str(copy), "export", target, "--output", str(out)]) == 0
    archive = zipfile.ZipFile(out)
    names = set(archive.namelist())
    assert {"README.txt", "landing_lines.ndjson", "deliveries.ndjson", "readings.parquet",
            "connections.csv", "marts/charging_sessions.csv", "marts/daily_mileage.csv",
            "marts/maintenance_forecast.csv"} <= names
    assert not any(target in n for n in names)  # names are fixed, never data

    # Landing: every line of the vehicle, as received (the malformed one that names it too).
    exported = archive.read("landing_lines.ndjson").splitlines()
    expected = _landing_lines(copy / "landing", target, texts)
    assert sorted(exported) == sorted(expected) and any(b"broken" in line for line in expected)
    # The lake: every parsed delivery's payload, every reading.
    lake_deliveries = pl.read_delta(str(copy / "lake/raw/deliveries")).filter(pl.col("vehicle_id") == target)
    assert sorted(archive.read("deliveries.ndjson").decode().splitlines()) == sorted(lake_deliveries["payload"])
    readings = pl.read_parquet(io.BytesIO(archive.read("readings.parquet")))
    lake_readings = pl.read_delta(str(copy / "lake/readings")).filter(pl.col("vehicle_id") == target)
    assert readings.height == lake_readings.height > 0 and set(readings["vehicle_id"]) == {target}
    # The marts: every row that names it, in every table that has a vehicle_id.
    with duckdb.connect(str(copy / "warehouse.duckdb"), read_only=True) as con:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.columns "
                                            "WHERE table_schema = 'marts' AND column_name = 'vehicle_id'").fetchall()]
        for table in tables:
            rows = con.execute(f"SELECT count(*) FROM marts.{table} WHERE vehicle_id = ?", [target]).fetchone()[0]
            assert pl.read_csv(io.BytesIO(archive.read(f"marts/{table}.csv")), infer_schema=False).height == rows, table
    assert pl.read_csv(io.BytesIO(archive.read("connections.csv")))["vehicle_id"].to_list() == [target]
    readme = archive.read("README.txt").decode()
    assert all(name.split("/")[0].split(".")[0] in readme for name in names - {"README.txt"})  # each file explained


def test_an_export_of_nothing_is_a_mistake(data_dir, capsys):
    assert main(["--data-dir", str(data_dir), "export", "nobody"]) == 2
    assert "nothing is held" in capsys.readouterr().err
