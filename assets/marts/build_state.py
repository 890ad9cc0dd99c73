"""What each mart was last built from, and so what a new build must recompute.

A mart's rows for a vehicle depend on that vehicle's readings and deliveries (and on other
marts built before it from the same). Each mart records, in the same warehouse transaction
as its rows, the lake state it read: per reading day, the ingest group the day's readings
were built up to (`_state/readings`), and the last committed ingest group. The next build
recomputes only the vehicles that any later ingest group added readings or deliveries for,
and replaces their rows; a mart without a recorded state (a new warehouse, a mart whose
last check failed, or after `forget_mart_builds`, e.g. an erasure), or built with another
configuration or another version of the code (`fingerprint`), is rebuilt whole.

The state lives in the warehouse, schema `build_state`, beside the marts it describes, so
that rows and state commit together: a crash leaves both as they were.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from pathlib import Path

import duckdb
import polars as pl

from storage.layout import RawLayout, ReadingsLayout
from storage.resources import LakeResource

STATE_SCHEMA = "build_state"
_BUILDS = f"{STATE_SCHEMA}.mart_builds"      # mart, ingest_seq, fingerprint
_DAYS = f"{STATE_SCHEMA}.mart_reading_days"  # mart, day, source_seq


@dataclass(frozen=True)
class LakeState:
    """What the lake held when a build started: each reading day's `source_seq` and the last
    committed ingest group. Taken before any data is read, so that whatever is committed
    meanwhile is newer than the state recorded and the next build picks it up."""

    day_seqs: dict[date, int]
    ingest_seq: int

    @classmethod
    def of(cls, lake: LakeResource) -> "LakeState":
        days = {day: row["source_seq"] for day, row in ReadingsLayout(lake).states().items()}
        return cls(days, RawLayout(lake).committed_seq)


SCOPE_SCHEMA = pl.Schema({"vehicle_id": pl.String, "since": pl.Datetime("us", "UTC"), "since_day": pl.Date})


@dataclass(frozen=True)
class MartScope:
    """The vehicles a mart build recomputes: `vehicles` None means every vehicle (a full
    build, which replaces the whole table). `since`, per vehicle, is when its new data
    starts (its earliest new reading; None: unknown, the whole vehicle): a mart whose rows
    before that cannot change (a windowed mart) recomputes only the rows from then on."""

    vehicles: frozenset[str] | None
    lake_state: LakeState
    since: Mapping[str, datetime | None] = field(default_factory=dict)

    @property
    def full(self) -> bool:
        return self.vehicles is None

    def frame(self) -> pl.DataFrame:
        """The scope's vehicles, with `since` and its UTC day (to register in DuckDB or join)."""
        vehicles = sorted(self.vehicles or ())
        return pl.DataFrame({"vehicle_id": vehicles, "since": [self.since.get(v) for v in vehicles]},
                            schema={"vehicle_id": pl.String, "since": pl.Datetime("us", "UTC")}
                            ).with_columns(since_day=pl.col("since").dt.date())

    def subset(self, vehicles: frozenset[str]) -> "MartScope":
        """The scope of some of its vehicles (a batch), each with its own `since`."""
        return MartScope(vehicles, self.lake_state, {v: self.since[v] for v in vehicles if v in self.since})

    def select(self, frame: pl.LazyFrame | pl.DataFrame, column: str = "vehicle_id"):
        """The rows of a frame that belong to the scope's vehicles (all of them on a full build)."""
        if self.vehicles is None:
            return frame
        return frame.filter(pl.col(column).is_in(sorted(self.vehicles)))


def _ensure(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {STATE_SCHEMA}").fetchall()
    con.execute(f"CREATE TABLE IF NOT EXISTS {_BUILDS} (mart VARCHAR PRIMARY KEY, ingest_seq BIGINT, "
                "fingerprint VARCHAR)").fetchall()
    con.execute(f"CREATE TABLE IF NOT EXISTS {_DAYS} (mart VARCHAR, day DATE, source_seq BIGINT)").fetchall()


def recorded_state(con: duckdb.DuckDBPyConnection, mart: str, fingerprint: str) -> LakeState | None:
    """The lake state `mart` was last built from, or None when it must be built whole (never
    built, its state forgotten, or built with another configuration)."""
    _ensure(con)
    found = con.execute(f"SELECT ingest_seq, fingerprint FROM {_BUILDS} WHERE mart = ?", [mart]).fetchall()
    if not found or found[0][1] != fingerprint:
        return None
    days = con.execute(f"SELECT day, source_seq FROM {_DAYS} WHERE mart = ?", [mart]).fetchall()
    return LakeState(dict(days), found[0][0])


def record_state(con: duckdb.DuckDBPyConnection, mart: str, fingerprint: str, state: LakeState) -> None:
    """Record what `mart` was built from; call inside the transaction that writes its rows."""
    _ensure(con)
    con.execute(f"DELETE FROM {_BUILDS} WHERE mart = ?", [mart]).fetchall()
    con.execute(f"DELETE FROM {_DAYS} WHERE mart = ?", [mart]).fetchall()
    con.execute(f"INSERT INTO {_BUILDS} VALUES (?, ?, ?)", [mart, state.ingest_seq, fingerprint]).fetchall()
    days = pl.DataFrame({"mart": mart, "day": list(state.day_seqs), "source_seq": list(state.day_seqs.values())},
                        schema={"mart": pl.String, "day": pl.Date, "source_seq": pl.Int64})
    con.register("recorded_days", days)
    try:
        con.execute(f"INSERT INTO {_DAYS} SELECT mart, day, source_seq FROM recorded_days").fetchall()
    finally:
        con.unregister("recorded_days")


def forget_mart_builds(con: duckdb.DuckDBPyConnection, mart: str | None = None) -> None:
    """Make the next build of `mart` (default: every mart) a full one. An erasure calls this:
    what it removed is not new data, so no incremental build would see it."""
    _ensure(con)
    where, params = ("WHERE mart = ?", [mart]) if mart is not None else ("", [])
    con.execute(f"DELETE FROM {_BUILDS} {where}", params).fetchall()
    con.execute(f"DELETE FROM {_DAYS} {where}", params).fetchall()


def touched_since(lake: LakeResource, since: LakeState, now: LakeState) -> dict[str, datetime | None]:
    """Vehicles with readings or deliveries that `now` holds and `since` did not (the raw
    signals of every reading day rebuilt since, from ingest groups after the one the day was
    built up to then, and the deliveries of ingest groups after `since`'s last), each with
    the time of its earliest new reading (None when only deliveries are new)."""
    raw = RawLayout(lake)
    changed = {day: since.day_seqs.get(day, 0) for day, seq in now.day_seqs.items()
               if seq != since.day_seqs.get(day)}
    found: dict[str, datetime | None] = {}
    if now.ingest_seq != since.ingest_seq:
        deliveries = (raw.scan("deliveries", pl.Schema({"vehicle_id": pl.String, "ingest_seq": pl.Int64}))
                      .filter(pl.col("ingest_seq") > since.ingest_seq).select("vehicle_id").unique().collect())
        found.update(dict.fromkeys(deliveries.get_column("vehicle_id").drop_nulls()))
    if changed:
        after = pl.DataFrame({"day": list(changed), "seen_seq": list(changed.values())},
                             schema={"day": pl.Date, "seen_seq": pl.Int64})
        schema = pl.Schema({"vehicle_id": pl.String, "reading_time": pl.Datetime("us", "UTC"), "day": pl.Date,
                            "ingest_seq": pl.Int64})
        signals = (raw.scan("signals", schema)
                   .filter(pl.col("day").is_in(list(changed)))  # reading days are the table's partitions
                   .join(after.lazy(), on="day").filter(pl.col("ingest_seq") > pl.col("seen_seq"))
                   .group_by("vehicle_id").agg(pl.col("reading_time").min()).collect())
        # A signal without a time is quarantined, not a reading: its vehicle counts whole.
        found.update((v, t) for v, t in signals.filter(pl.col("vehicle_id").is_not_null()).iter_rows())
    return found


def touched_vehicles(lake: LakeResource, since: LakeState, now: LakeState) -> frozenset[str]:
    return frozenset(touched_since(lake, since, now))


# The code a mart's rows come from: the `assets` package (the marts, and the catalog,
# schemas and coarsening they use). What a changed version of it would compute differently
# is not new data, so no incremental build would see it.
ASSETS_PACKAGE = Path(__file__).parents[1]


@cache
def code_version() -> str:
    """A digest of the `assets` package's source (Python, SQL, TOML), by relative path."""
    digest = hashlib.sha256()
    for path in sorted(p for p in ASSETS_PACKAGE.rglob("*") if p.suffix in {".py", ".sql", ".toml"}):
        digest.update(path.relative_to(ASSETS_PACKAGE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def fingerprint(config) -> str:
    """What else than the lake a mart's rows depend on: its run configuration and its code
    (a build with another of either is a full one)."""
    return json.dumps({"config": config.model_dump() if config is not None else None, "code": code_version()},
                      sort_keys=True, default=str)
