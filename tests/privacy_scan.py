"""A scan of every file under a data directory for traces of a vehicle: its ids as text
(raw bytes, gzip decompressed, every Parquet column and every DuckDB table read as text)
and its coordinates as numbers (every float of every Parquet and DuckDB column, and every
number in JSON text, against the vehicle's latitudes and longitudes at the precision stored)."""

import gzip
import json
import math
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq

_NUMBER = re.compile(rb"-?\d{1,3}\.\d{4,}")


@dataclass
class Traces:
    texts: list[str]
    coordinates: set[float]
    hits: list[str] = field(default_factory=list)

    def check_bytes(self, where: str, data: bytes) -> None:
        for text in self.texts:
            if text.encode() in data:
                self.hits.append(f"{where}: {text!r}")
        if self.coordinates:
            for match in set(_NUMBER.findall(data)):
                if _close(float(match), self.coordinates):
                    self.hits.append(f"{where}: coordinate {match.decode()}")

    def check_frame(self, where: str, frame: pl.DataFrame) -> None:
        for name, dtype in frame.schema.items():
            column = frame.get_column(name)
            if dtype.is_float():
                found = {v for v in column.drop_nulls().unique().to_list() if _close(v, self.coordinates)}
                if found:
                    self.hits.append(f"{where}.{name}: coordinates {sorted(found)[:3]}")
            as_text = column.cast(pl.String, strict=False) if not dtype.is_nested() else \
                column.map_elements(lambda v: json.dumps(v.to_list() if isinstance(v, pl.Series) else v, default=str),
                                    return_dtype=pl.String)
            joined = "\n".join(as_text.drop_nulls().to_list())
            for text in self.texts:
                if text in joined:
                    self.hits.append(f"{where}.{name}: {text!r}")
            if not dtype.is_float() and self.coordinates:
                self.check_bytes(f"{where}.{name}", joined.encode())


def _close(value: float, coordinates: set[float]) -> bool:
    return not math.isnan(value) and any(abs(value - c) < 5e-7 for c in coordinates)


def _gunzip(data: bytes) -> bytes:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        return zlib.decompressobj(wbits=31).decompress(data)  # as far as it goes


def _spellings(text: str) -> set[str]:
    """The text, and as JSON writes it (quotes and backslashes escaped, non-ASCII as \\uXXXX)."""
    return {text, json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]}


def scan(data_dir: Path, texts: list[str], coordinates: set[float]) -> list[str]:
    traces = Traces(sorted({s for t in texts if t for s in _spellings(t)}), coordinates)
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file() and not p.is_symlink()):
        where = str(path.relative_to(data_dir))
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # a SQLite -shm/-wal file removed as its database closed: it holds nothing now
            continue
        traces.check_bytes(where, data)
        if path.name.endswith(".gz"):
            traces.check_bytes(where + " (gunzipped)", _gunzip(data))
        if data[:4] == b"PAR1":
            traces.check_frame(where, pl.from_arrow(pq.read_table(path)))
        if path.suffix == ".duckdb":
            with duckdb.connect(str(path), read_only=True) as con:
                for schema, table in con.execute("SELECT table_schema, table_name FROM information_schema.tables "
                                                 "WHERE table_type = 'BASE TABLE'").fetchall():
                    traces.check_frame(f"{where}:{schema}.{table}", con.sql(f'SELECT * FROM "{schema}"."{table}"').pl())
    return traces.hits


def vehicle_traces(data_dir: Path, vehicle_id: str) -> tuple[list[str], set[float]]:
    """The vehicle's id, VIN, user id and coordinates, from the lake before an erasure."""
    deliveries = pl.read_delta(str(data_dir / "lake/raw/deliveries")).filter(pl.col("vehicle_id") == vehicle_id)
    users = deliveries.get_column("user_id").drop_nulls().unique().to_list()
    vins = deliveries.get_column("vin").drop_nulls().unique().to_list()
    readings = pl.read_delta(str(data_dir / "lake/readings")).filter(
        (pl.col("vehicle_id") == vehicle_id) & pl.col("metric").is_in(["latitude_deg", "longitude_deg"]))
    return [vehicle_id, *users, *vins], set(readings.get_column("value").to_list())
