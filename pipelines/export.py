"""The owner's copy: everything Fleetlake holds about vehicles (or all of a user's
vehicles) in one zip archive of open formats, with a README that says what each file is.

Every name inside the archive is fixed here (or is a mart's table name): none is built
from data, so no id can become a path.
"""

import io
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from assets.marts.warehouse_io import lake_scan
from pipelines.erasure import Subjects, resolve
from storage.connections import read_connections
from storage.erasure import belongs_to, landing_text
from storage.errors import UserError
from storage.files import inside
from storage.layout import SmartcarLayout, landing_files
from storage.resources import LakeResource, WarehouseResource

README = """\
Fleetlake export: everything this Fleetlake installation holds about the vehicle(s) named
in the request, written {written_at} (UTC).

landing_lines.ndjson       every line of the landing files that belongs to the vehicles,
                           exactly as received (Smartcar webhook or pull deliveries, one
                           JSON document per line; a malformed line as it came), with
                           repeated deliveries as they were repeated
deliveries.ndjson          each delivery the lake parsed, once, as received (its payload)
quarantined_lines.ndjson   lines the lake could not parse that belong to the vehicles, as
                           received (not necessarily valid JSON)
readings.parquet           typed readings in SI units: one row per value (metric,
                           component, value, unit, reading time, delivery)
signal_errors.parquet      signals Smartcar could not read (e.g. a revoked permission)
quarantined_signals.parquet signals that could not be read as values, with the reason
vehicle_errors.csv         errors Smartcar reported for the vehicles (VEHICLE_ERROR)
connections.csv            the Smartcar connection records: who connected each vehicle,
                           when, whether it still is
marts/<table>.csv          the vehicles' rows of each analytics table: vehicles, daily
                           mileage, mileage verification, odometer anomalies, charging
                           sessions, battery health, maintenance forecast, vehicle errors,
                           connections (columns are described in the project's data
                           dictionary; units are in the column names)

Counts: {counts}
"""


def _ndjson(texts: list[str]) -> bytes:
    return "".join(t + "\n" for t in texts).encode("utf-8", "surrogatepass")


def _parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def _csv(frame: pl.DataFrame) -> bytes:
    # CSV holds no lists: nested columns are written as JSON text.
    nested = [c for c, t in frame.schema.items() if isinstance(t, (pl.List, pl.Struct, pl.Array))]
    flat = frame.with_columns(pl.col(c).map_elements(_json_text, return_dtype=pl.String) for c in nested)
    return flat.write_csv().encode("utf-8")


def _json_text(value) -> str:
    import json

    return json.dumps(value.to_list() if isinstance(value, pl.Series) else value, default=str)


def landing_lines_of(lake: LakeResource, subjects: Subjects) -> list[bytes]:
    remove = belongs_to(subjects.vehicle_ids, subjects.user_ids, subjects.terms)
    found = []
    for path in landing_files(lake.landing):
        found += [line for line in landing_text(path).split(b"\n") if line and remove(line)]
    return found


def _mart_rows(warehouse: WarehouseResource, vehicle_ids: list[str]) -> dict[str, pl.DataFrame]:
    if not warehouse.path.exists():
        return {}
    out = {}
    with warehouse.connect(read_only=True) as con:
        names = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = 'marts' AND column_name = 'vehicle_id' "
            "ORDER BY table_name").fetchall()]
        for name in names:
            # the table name comes from the warehouse's own catalogue, the ids are parameters
            out[name] = con.sql(f'SELECT * FROM marts."{name}" WHERE vehicle_id IN (SELECT unnest(?))',
                                params=[vehicle_ids]).pl()
    return out


def export_archive(lake: LakeResource, warehouse: WarehouseResource, vehicle_ids: list[str], user_ids: list[str],
                   output: Path | None = None) -> tuple[Path, dict[str, int]]:
    subjects = resolve(lake, vehicle_ids, user_ids)
    vehicles = sorted(subjects.vehicle_ids)
    by_vehicle = pl.col("vehicle_id").is_in(vehicles)
    lines = landing_lines_of(lake, subjects)
    deliveries = lake_scan(lake, "deliveries").filter(by_vehicle | pl.col("user_id").is_in(list(subjects.user_ids)))
    deliveries = deliveries.sort("delivered_at", "event_id").collect()
    quarantined = lake_scan(lake, "quarantined_lines").filter(
        by_vehicle | (pl.col("vehicle_id").is_null() & pl.any_horizontal(
            [pl.col("raw_text").str.contains(t, literal=True) for t in subjects.texts] or [pl.lit(False)])))
    quarantined = quarantined.sort("source_file", "line_no").collect()
    files: dict[str, bytes] = {
        "landing_lines.ndjson": b"".join(line + b"\n" for line in lines),
        "deliveries.ndjson": _ndjson(deliveries.get_column("payload").to_list()),
        "quarantined_lines.ndjson": _ndjson(quarantined.get_column("raw_text").to_list()),
    }
    counts = {"landing_lines": len(lines), "deliveries": deliveries.height, "quarantined_lines": quarantined.height}
    for name, table in (("readings", "readings"), ("signal_errors", "signal_errors"),
                        ("quarantined_signals", "quarantined_signals")):
        frame = lake_scan(lake, table).filter(by_vehicle).collect()
        files[f"{name}.parquet"] = _parquet(frame)
        counts[name] = frame.height
    errors = lake_scan(lake, "raw_vehicle_errors").filter(by_vehicle).collect()
    files["vehicle_errors.csv"] = _csv(errors)
    counts["vehicle_errors"] = errors.height
    connections = read_connections(SmartcarLayout(lake)).filter(by_vehicle)
    files["connections.csv"] = _csv(connections)
    counts["connections"] = connections.height
    for table, frame in _mart_rows(warehouse, vehicles).items():
        files[f"marts/{table}.csv"] = _csv(frame)
        counts[f"marts.{table}"] = frame.height
    if not any(counts.values()):
        raise UserError("nothing is held about the given ids (never seen, or erased)")
    written_at = datetime.now(UTC)
    files["README.txt"] = README.format(written_at=written_at.isoformat(timespec="seconds"),
                                        counts=", ".join(f"{k} {v}" for k, v in counts.items())).encode()
    exports = lake.root / "exports"
    path = output or inside(exports, exports / f"export-{written_at.strftime('%Y%m%dT%H%M%SZ')}.zip")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(staged, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    staged.replace(path)
    return path, counts
