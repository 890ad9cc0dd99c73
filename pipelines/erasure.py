"""The owner's right to erasure: remove every trace of vehicles (or of all of a user's
vehicles) from the data directory, keep them from coming back, and leave a receipt.

The command (`fleetlake erase`) and the Dagster job (`erase_job`) run `erase`. In order:

1. the intent: the keyed hashes go into the erased record (storage/erased_record.py), so
   ingest and the pull drop the vehicles from then on; then a plan (no ids: files, batches,
   days, counts) under `privacy/pending/`, which a re-run after a crash picks up;
2. the readings days that hold the vehicles are marked unbuilt and the marts' incremental
   build state is forgotten (so that the next build, even after a crash before the rebuild,
   rebuilds those days and every mart whole);
3. the raw tables lose the vehicles' rows (deliveries, signals, vehicle errors, duplicates,
   quarantined lines, also malformed lines that mention an id), the batches take the
   removed lines as `erased`, landing files are rewritten without their lines, the
   connection records lose their rows;
4. quality results and mileage statements that mention them are deleted (a build makes
   the results again);
5. the normal build rebuilds the marked days and the marts;
6. every lake table's history goes (old files, old commits: they hold removed rows and
   statistics), the warehouse is copied to a fresh file (freed blocks of a DuckDB file
   keep old values), and the Dagster runs whose records mention the vehicles are deleted
   (their event logs, asset materializations and check results with them), with the
   instance's SQLite files vacuumed;
7. the receipt (`privacy/receipts/`), and the entries marked completed.

Every step is idempotent: running the same erasure again finishes one that was cut short,
and erasing twice is harmless.
"""


import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl

from assets.marts.build_state import forget_mart_builds
from assets.raw import unseen_landing_files
from storage import tables
from storage.connections import read_connections, write_connections
from storage.data_dir import dagster_home
from storage.erased_record import USER, VEHICLE, ErasedRecord, privacy_dir
from storage.erasure import belongs_to, landing_text, mentions, rewrite_landing_file, search_terms
from storage.errors import UserError
from storage.files import write_text_atomic
from storage.layout import BATCHES_SCHEMA, ERASED_SCHEMA, RAW_TABLES, RawLayout, ReadingsLayout, SmartcarLayout
from storage.resources import LakeResource

# Set only by the tests: stop the erasure (as a crash would) after the named step.
CRASH_AFTER_ENV = "FLEETLAKE_TEST_ERASURE_CRASH_AFTER"
STEPS = ("intent", "days", "raw", "landing", "batches", "connections", "results", "build", "history", "warehouse",
         "dagster")


def _step_done(step: str) -> None:
    if os.getenv(CRASH_AFTER_ENV) == step:
        os._exit(97)  # as kill -9 at a layer boundary: nothing after this runs, nothing is cleaned up


@dataclass
class Subjects:
    """Who is being erased, in the clear, only in this process's memory: the vehicles, the
    users all of whose data goes (those named with --user), and what else names only them
    (VINs, and the user ids of users who have no other vehicle) for the text searches."""
    vehicle_ids: set[str]
    user_ids: set[str]
    vins: set[str] = field(default_factory=set)
    sole_users: set[str] = field(default_factory=set)

    @property
    def terms(self) -> list[bytes]:
        return search_terms(self.vehicle_ids | self.user_ids | self.vins | self.sole_users)

    @property
    def texts(self) -> list[str]:
        return sorted(t.decode("utf-8", "surrogatepass") for t in self.terms)


def _in(column: str, values: set[str]) -> str:
    return f"{column} IN ({', '.join(map(tables.sql_text, sorted(values)))})" if values else "FALSE"


def _mentions_sql(column: str, texts: list[str]) -> str:
    return " OR ".join(f"strpos({column}, {tables.sql_text(t)}) > 0" for t in texts) or "FALSE"


def _unnamed(column: str = "vehicle_id") -> pl.Expr:
    return (pl.col(column).is_null() | (pl.col(column).str.strip_chars() == "")).fill_null(True)


def _row_filters(subjects: Subjects) -> dict[str, tuple[pl.Expr, str]]:
    """Each raw table's rows of the subjects, as a Polars filter and as a Delta predicate
    (the same rule; see storage/erasure.py `belongs_to` for landing lines)."""
    vehicles, texts = subjects.vehicle_ids, subjects.texts
    by_vehicle = (pl.col("vehicle_id").is_in(list(vehicles)).fill_null(False), _in("vehicle_id", vehicles))
    mention = pl.any_horizontal([pl.col("raw_text").str.contains(t, literal=True) for t in texts]) if texts else pl.lit(False)
    return {
        "deliveries": (by_vehicle[0] | pl.col("user_id").is_in(list(subjects.user_ids)).fill_null(False),
                       f"{by_vehicle[1]} OR {_in('user_id', subjects.user_ids)}"),
        "signals": by_vehicle, "vehicle_errors": by_vehicle, "duplicates": by_vehicle,
        "quarantine": (by_vehicle[0] | (_unnamed() & mention.fill_null(False)),
                       f"{by_vehicle[1]} OR ((vehicle_id IS NULL OR trim(vehicle_id) = '') AND "
                       f"({_mentions_sql('raw_text', texts)}))"),
    }


def resolve(lake: LakeResource, vehicle_ids: list[str], user_ids: list[str]) -> Subjects:
    """The vehicles to erase (those given, and every vehicle of the users given, from the
    deliveries and the connection records) and what else names them (users, VINs)."""
    raw = RawLayout(lake)
    vehicles, users = set(vehicle_ids), set(user_ids)
    deliveries = raw.scan("deliveries", pl.Schema({"vehicle_id": pl.String, "user_id": pl.String, "vin": pl.String}))
    connections = read_connections(SmartcarLayout(lake))
    if users:
        vehicles |= set(deliveries.filter(pl.col("user_id").is_in(list(users))).select("vehicle_id").unique()
                        .collect().get_column("vehicle_id").drop_nulls())
        vehicles |= set(connections.filter(pl.col("user_id").is_in(list(users))).get_column("vehicle_id"))
    own = deliveries.filter(pl.col("vehicle_id").is_in(list(vehicles))).select("user_id", "vin").unique().collect()
    owners = set(own.get_column("user_id").drop_nulls())
    owners |= set(connections.filter(pl.col("vehicle_id").is_in(list(vehicles))).get_column("user_id").drop_nulls())
    # A user with another vehicle keeps it: their id is no trace of the erased vehicle alone.
    others = deliveries.filter(pl.col("user_id").is_in(list(owners)) & ~pl.col("vehicle_id").is_in(list(vehicles)))
    shared = set(others.select("user_id").unique().collect().get_column("user_id"))
    shared |= set(connections.filter(pl.col("user_id").is_in(list(owners))
                                     & ~pl.col("vehicle_id").is_in(list(vehicles))).get_column("user_id"))
    vins = set(own.get_column("vin").drop_nulls()) - {""}
    return Subjects(vehicles, {u for u in users if u}, vins, {u for u in owners - shared if u})


def found_anywhere(lake: LakeResource, subjects: Subjects) -> bool:
    """Whether the lake, the connection records or a landing file not yet ingested holds
    any of the subjects (an id found nowhere is a mistyped one, unless it was erased)."""
    raw = RawLayout(lake)
    filters = _row_filters(subjects)
    for table in ("deliveries", "duplicates", "quarantine"):
        schema = pl.Schema({"vehicle_id": pl.String, "user_id": pl.String, "raw_text": pl.String})
        columns = {"deliveries": ["vehicle_id", "user_id"], "duplicates": ["vehicle_id"],
                   "quarantine": ["vehicle_id", "raw_text"]}[table]
        scanned = raw.scan(table, pl.Schema({c: schema[c] for c in columns}))
        if scanned.filter(filters[table][0]).select(pl.len()).collect().item():
            return True
    if read_connections(SmartcarLayout(lake)).filter(pl.col("vehicle_id").is_in(list(subjects.vehicle_ids))).height:
        return True
    terms = subjects.terms
    return any(mentions(landing_text(path), terms) for path, _, _ in unseen_landing_files(raw))


# ---------------------------------------------------------------- the plan


def _request_id(hashes: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()[:24]


def make_plan(lake: LakeResource, subjects: Subjects) -> dict:
    """What the erasure will change, in absolute terms (so that applying it twice is
    applying it once), holding no id: landing files by their name in landing, batches by
    id, days, and counts."""
    raw = RawLayout(lake)
    filters = _row_filters(subjects)
    removed: dict[str, pl.DataFrame] = {}
    for table in ("deliveries", "duplicates", "quarantine", "signals", "vehicle_errors"):
        path = raw.table_dir(table)
        if not tables.exists(path):
            continue
        needed = {"deliveries": ["batch_id", "landed_on", "source_file", "vehicle_id", "user_id"],
                  "duplicates": ["batch_id", "landed_on", "source_file", "vehicle_id"],
                  "quarantine": ["batch_id", "landed_on", "source_file", "vehicle_id", "raw_text"],
                  "signals": ["batch_id", "day", "vehicle_id"], "vehicle_errors": ["batch_id", "vehicle_id"]}[table]
        frame = tables.scan(path, pl.Schema()).select(needed).filter(filters[table][0]).collect()
        removed[table] = frame
    lines = pl.concat([removed[t].select("batch_id", "landed_on", "source_file")
                       for t in ("deliveries", "duplicates", "quarantine") if t in removed]
                      or [pl.DataFrame(schema={"batch_id": pl.String, "landed_on": pl.Date, "source_file": pl.String})])
    batches = raw.batches
    previously = raw.scan("erased", ERASED_SCHEMA).collect()
    erased_rows = (pl.concat([previously.filter(pl.col("batch_id").is_in(lines.get_column("batch_id").unique().implode())),
                              lines.group_by("batch_id", "landed_on").agg(lines=pl.len().cast(pl.Int64))])
                   .group_by("batch_id", "landed_on").agg(pl.col("lines").sum()).sort("batch_id", "landed_on"))
    per_batch: dict[str, dict] = {}
    counts = {"parsed": "deliveries", "duplicates": "duplicates", "quarantined": "quarantine",
              "signals": "signals", "vehicle_errors": "vehicle_errors"}
    for batch in batches.filter(pl.col("batch_id").is_in(lines.get_column("batch_id").unique().implode())).to_dicts():
        new = {}
        for field_name, table in counts.items():
            gone = removed[table].filter(pl.col("batch_id") == batch["batch_id"]).height if table in removed else 0
            new[field_name] = batch[field_name] - gone
        new["erased"] = (batch.get("erased") or 0) + sum(
            removed[t].filter(pl.col("batch_id") == batch["batch_id"]).height
            for t in ("deliveries", "duplicates", "quarantine") if t in removed)
        new["lines"] = batch["lines"]
        per_batch[batch["batch_id"]] = new
    days = sorted({d.isoformat() for d in removed["signals"].get_column("day").unique()} if "signals" in removed else set())
    # Landing files: those the lake says hold the subjects' lines, and those not ingested yet.
    files = set(lines.get_column("source_file").unique())
    files |= {relative for _, relative, _ in unseen_landing_files(raw)}
    return {"batches": per_batch, "erased_rows": [{**r, "landed_on": r["landed_on"].isoformat()}
                                                 for r in erased_rows.to_dicts()],
            "days": days, "landing_files": sorted(files),
            "records": {t: f.height for t, f in removed.items()}}


def _pending_path(data_dir: Path, request: str) -> Path:
    return privacy_dir(data_dir) / "pending" / f"{request}.json"


# ---------------------------------------------------------------- the layers


def invalidate_days(lake: LakeResource, days: list[str]) -> None:
    """Mark the days unbuilt and the marts' builds forgotten: the next build (this erasure's,
    or any) rebuilds the days from the raw signals that are left, and every mart whole (what
    is removed is no new data, which an incremental build would look for)."""
    if days:
        tables.delete_rows(ReadingsLayout(lake).state_table, _in("day", set(days)))
    if lake.warehouse_path.exists():
        with duckdb.connect(str(lake.warehouse_path)) as con:
            forget_mart_builds(con)


def erase_raw(lake: LakeResource, subjects: Subjects) -> dict:
    raw = RawLayout(lake)
    done = {}
    for table, (_, predicate) in _row_filters(subjects).items():
        done[table] = tables.delete_rows(raw.table_dir(table), predicate)
    return done


def erase_landing(lake: LakeResource, subjects: Subjects, files: list[str]) -> dict[str, dict]:
    """Rewrite the planned landing files without the subjects' lines. Returns, per file
    rewritten, its new size, times and hash."""
    remove = belongs_to(subjects.vehicle_ids, subjects.user_ids, subjects.terms)
    by_name = {relative: path for path, relative, _ in _landing_paths(lake)}
    rewritten = {}
    for name in files:
        path = by_name.get(name)
        if path is None:
            continue
        result = rewrite_landing_file(path, remove, subjects.terms)
        if result is not None:
            rewritten[name] = result.__dict__
    return rewritten


def _landing_paths(lake: LakeResource):
    from storage.layout import landing_files, landing_name

    for path in landing_files(lake.landing):
        yield path, landing_name(path.relative_to(lake.landing).as_posix()), None


def update_batches(lake: LakeResource, plan: dict) -> None:
    """The batches take the plan's counts, and the landing files' current size, times and
    hash (so that a rewritten file is not taken for a new one); the erased lines table its
    rows. Both replace, so applying this twice is applying it once."""
    raw = RawLayout(lake)
    if not plan["batches"] and not plan["landing_files"]:
        return
    current = {}
    for path, relative, _ in _landing_paths(lake):
        if relative in plan["landing_files"]:
            stat = path.lstat()
            current[relative] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ctime_ns": stat.st_ctime_ns,
                                 "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    rows = []
    for batch in raw.batches.to_dicts():
        batch = {**batch, **plan["batches"].get(batch["batch_id"], {})}
        if batch["batch_id"] in plan["batches"] and batch["source_file"] in current:
            batch.update(current[batch["source_file"]])
        rows.append(batch)
    if rows:
        tables.overwrite(raw.batches_table, pl.DataFrame(rows, schema=BATCHES_SCHEMA))
    if plan["erased_rows"]:
        frame = pl.DataFrame(plan["erased_rows"]).with_columns(pl.col("landed_on").str.to_date())
        seqs = dict(raw.batches.select("batch_id", "ingest_seq").iter_rows())
        frame = frame.with_columns(ingest_seq=pl.col("batch_id").replace_strict(seqs, return_dtype=pl.Int64))
        frame = frame.select(*ERASED_SCHEMA.names(), "ingest_seq").cast(dict(ERASED_SCHEMA))
        tables.replace(raw.table_dir("erased"), frame, _in("batch_id", set(frame.get_column("batch_id"))))


def erase_connections(lake: LakeResource, subjects: Subjects) -> int:
    layout = SmartcarLayout(lake)
    rows = read_connections(layout)
    gone = rows.filter(pl.col("vehicle_id").is_in(list(subjects.vehicle_ids))
                       | pl.col("user_id").is_in(list(subjects.user_ids)))
    if gone.height:
        write_connections(layout, rows.join(gone.select("vehicle_id"), on="vehicle_id", how="anti"))
    return gone.height


def erase_files_mentioning(folder: Path, subjects: Subjects, glob: str = "**/*") -> int:
    """Delete the files under `folder` that mention the subjects (quality results, mileage
    statements; a statement's JSON, CSV and evidence CSV are each checked)."""
    if not folder.is_dir():
        return 0
    removed = 0
    terms = subjects.terms
    for path in sorted(folder.glob(glob)):
        if path.is_file() and not path.is_symlink() and mentions(path.read_bytes(), terms):
            path.unlink()
            removed += 1
    return removed


def erase_parquet_rows(folder: Path, subjects: Subjects) -> int:
    """Rewrite the Parquet files under `folder` (the simulator's ground truth, outside the
    lake) without the rows whose text columns name a subject. Returns the files rewritten."""
    if not folder.is_dir():
        return 0
    names = sorted(subjects.vehicle_ids | subjects.user_ids | subjects.vins | subjects.sole_users)
    rewritten = 0
    for path in sorted(folder.rglob("*.parquet")):
        frame = pl.read_parquet(path)
        text_columns = [c for c, t in frame.schema.items() if t == pl.String]
        if not text_columns:
            continue
        theirs = pl.any_horizontal([pl.col(c).is_in(names) for c in text_columns]).fill_null(False)
        if frame.filter(theirs).height:
            staged = path.with_name(f".{path.name}.erasing")
            frame.filter(~theirs).write_parquet(staged)
            os.replace(staged, path)
            rewritten += 1
    return rewritten


def lake_tables(lake: LakeResource) -> list[Path]:
    raw, out = RawLayout(lake), ReadingsLayout(lake)
    found = [raw.batches_table, *map(raw.table_dir, RAW_TABLES), out.state_table,
             *(out.table(k) for k in ("readings", "signal_errors", "quarantine/readings")),
             SmartcarLayout(lake).connections_table]
    found += [p.parent for p in lake.lake.glob("**/_delta_log") if p.parent not in found]
    return [p for p in found if tables.exists(p)]


def forget_lake_history(lake: LakeResource) -> int:
    return sum(tables.forget_history(path) for path in lake_tables(lake))


def compact_warehouse(path: Path) -> bool:
    """Copy the warehouse into a fresh file and put it in place: a DuckDB file keeps the
    blocks of replaced tables until they are reused, and they hold the old values."""
    if not path.exists():
        return False
    fresh = path.with_name(f".{path.name}.compacting")
    for leftover in (fresh, fresh.with_name(fresh.name + ".wal")):
        leftover.unlink(missing_ok=True)
    con = duckdb.connect()
    try:
        con.execute("ATTACH ? AS old (READ_ONLY)", [str(path)]).fetchall()
        con.execute("ATTACH ? AS fresh", [str(fresh)]).fetchall()
        con.execute("COPY FROM DATABASE old TO fresh").fetchall()
        con.execute("DETACH fresh").fetchall()
        con.execute("DETACH old").fetchall()
    finally:
        con.close()
    os.replace(fresh, path)
    path.with_name(path.name + ".wal").unlink(missing_ok=True)
    return True


def erase_dagster_runs(instance: dg.DagsterInstance, subjects: Subjects, keep: set[str] = frozenset()) -> int:
    """Delete the runs whose record (config, tags) or event log (logs, asset materialization
    and check metadata) mentions the subjects: deleting a run deletes its event log. The
    instance's SQLite files are then vacuumed, so that deleted rows leave no copy in free
    pages. Returns the runs deleted."""
    from dagster._serdes import serialize_value

    terms = subjects.terms
    deleted = 0
    for run in instance.get_runs():
        if run.run_id in keep or not run.is_finished:
            continue
        text = serialize_value(run).encode("utf-8", "surrogatepass")
        if not mentions(text, terms):
            records = instance.all_logs(run.run_id)
            text = "\n".join(serialize_value(r) for r in records).encode("utf-8", "surrogatepass")
        if mentions(text, terms):
            instance.delete_run(run.run_id)
            deleted += 1
    return deleted


def vacuum_sqlite(home: Path) -> int:
    vacuumed = 0
    for db in sorted(home.glob("**/*.db")):
        with sqlite3.connect(db) as con:
            con.execute("VACUUM")
        vacuumed += 1
    return vacuumed


# ---------------------------------------------------------------- receipts


def receipts_dir(data_dir: Path) -> Path:
    return privacy_dir(data_dir) / "receipts"


def write_receipt(data_dir: Path, receipt: dict) -> Path:
    folder = receipts_dir(data_dir)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    # The name is the time and the request's hash: never built from an id.
    name = f"{receipt['completed_at'].replace(':', '').replace('-', '')}-{receipt['request']}.json"
    return write_text_atomic(json.dumps(receipt, indent=1), folder / name)


def list_receipts(data_dir: Path) -> list[dict]:
    folder = receipts_dir(data_dir)
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


# ---------------------------------------------------------------- the erasure


@dataclass
class ErasureOutcome:
    receipt: dict
    path: Path
    already_erased: bool


def erase(lake: LakeResource, vehicle_ids: list[str], user_ids: list[str],
          build: Callable[[], object], instance: dg.DagsterInstance | None = None,
          keep_runs: set[str] = frozenset(), log: Callable[[str], None] = lambda _: None) -> ErasureOutcome:
    """Erase vehicles and users from the data directory (see the module's docstring).
    `build` runs the normal build. Raises UserError for an id found nowhere that was never
    erased (a mistyped one): nothing is recorded then."""
    started = time.monotonic()
    seconds: dict[str, float] = {}
    last = [started]

    def step_done(step: str) -> None:
        now = time.monotonic()
        seconds[step] = round(now - last[0], 2)
        last[0] = now
        _step_done(step)

    data_dir = lake.root
    vehicle_ids, user_ids = [v for v in vehicle_ids if v], [u for u in user_ids if u]
    if not vehicle_ids and not user_ids:
        raise UserError("name at least one vehicle id (or --user USER_ID)")
    record = ErasedRecord(data_dir)
    known = (record.erased_among(VEHICLE, vehicle_ids), record.erased_among(USER, user_ids))
    subjects = resolve(lake, vehicle_ids, user_ids)
    unknown = [v for v in vehicle_ids if v not in known[0]] + [u for u in user_ids if u not in known[1]]
    if unknown and not found_anywhere(lake, Subjects(set(vehicle_ids) - known[0], set(user_ids) - known[1])):
        already = known[0] or known[1]
        if not already:
            raise UserError(f"{len(unknown)} of the given ids are found nowhere in {data_dir} and were never "
                            "erased: check them (nothing was changed)")
    # Users are recorded only when named: erasing one vehicle keeps its user's other vehicles.
    hashes = (record.record_intent(VEHICLE, sorted(subjects.vehicle_ids))
              + record.record_intent(USER, sorted(subjects.user_ids)))
    requested = (record.hashes(VEHICLE, vehicle_ids) | {f"user:{u}": h for u, h in record.hashes(USER, user_ids).items()})
    request = _request_id(list(requested.values()))
    step_done("intent")

    pending = _pending_path(data_dir, request)
    resumed = pending.exists()
    if resumed:
        plan = json.loads(pending.read_text())  # a re-run: finish what was planned
    else:
        plan = make_plan(lake, subjects)
        pending.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_text_atomic(json.dumps(plan), pending)
    layers: dict[str, dict] = {}
    invalidate_days(lake, plan["days"])
    layers["readings"] = {"days_rebuilt": len(plan["days"])}
    step_done("days")
    raw = erase_raw(lake, subjects)
    layers["raw"] = {"records": plan["records"], "files_rewritten": sum(v["files_removed"] for v in raw.values())}
    step_done("raw")
    rewritten = erase_landing(lake, subjects, plan["landing_files"])
    layers["landing"] = {"files_rewritten": len(rewritten), "lines_removed": sum(r["lines_removed"] for r in rewritten.values()),
                         "files_checked": len(plan["landing_files"])}
    step_done("landing")
    update_batches(lake, plan)
    step_done("batches")
    layers["connections"] = {"records": erase_connections(lake, subjects)}
    step_done("connections")
    layers["quality_results"] = {"files_deleted": erase_files_mentioning(lake.path("quality"), subjects, "**/*.json")}
    layers["statements"] = {"files_deleted": erase_files_mentioning(data_dir / "statements", subjects)}
    layers["ground_truth"] = {"files_rewritten": erase_parquet_rows(data_dir / "ground_truth", subjects)}
    step_done("results")
    if resumed or any(plan["records"].values()) or layers["connections"]["records"]:
        log("erasure: lake layers done; rebuilding the marked days and the marts")
        build()
    step_done("build")
    layers["history"] = {"old_files_deleted": forget_lake_history(lake)}
    step_done("history")
    layers["warehouse"] = {"rebuilt": True, "compacted": compact_warehouse(lake.warehouse_path)}
    step_done("warehouse")
    if instance is not None:
        layers["dagster"] = {"runs_deleted": erase_dagster_runs(instance, subjects, keep_runs)}
        if instance.is_persistent:
            layers["dagster"]["sqlite_files_vacuumed"] = vacuum_sqlite(Path(instance.root_directory))
    step_done("dagster")

    record.mark_completed(hashes)
    receipt = {
        "request": request, "completed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "requested": [{"kind": "user" if k.startswith("user:") else "vehicle", "hash": h} for k, h in requested.items()],
        "subjects": {"vehicles": len(subjects.vehicle_ids), "users": len(subjects.user_ids | subjects.sole_users)},
        "nothing_left_to_remove": not any(plan["records"].values()),
        "records_removed": sum(plan["records"].values()) + layers["connections"]["records"],
        "files_rewritten": layers["landing"]["files_rewritten"] + layers["raw"]["files_rewritten"],
        "layers": layers, "seconds": round(time.monotonic() - started, 2), "step_seconds": seconds,
        "hash": "HMAC-SHA256 over 'vehicle\\n<id>' or 'user\\n<id>', keyed by FLEETLAKE_ERASURE_KEY or privacy/erasure.key",
    }
    path = write_receipt(data_dir, receipt)
    pending.unlink(missing_ok=True)
    return ErasureOutcome(receipt, path, bool(known[0] or known[1]))


def build_step(instance: dg.DagsterInstance, resources: dict, log_level: str = "CRITICAL") -> Callable[[], object]:
    """The normal build (`fleetlake run`), on these resources and instance, for `erase`."""
    def run():
        from pipelines.build import build_everything
        from pipelines.definitions import build_definitions

        report = build_everything(build_definitions(resources), instance, log_level=log_level)
        if report.errors:
            raise RuntimeError(f"the rebuild after the erasure failed: {'; '.join(report.errors)}")
        return report
    return run


class EraseConfig(dg.Config):
    vehicle_ids: list[str] = []
    user_ids: list[str] = []
    # Also every vehicle whose connection record has said DISCONNECTED for at least this many
    # hours (the disconnection sensor's way: its run config then names no vehicle).
    disconnected_for_hours: float | None = None


def disconnected_vehicles(lake: LakeResource, grace_hours: float, now: datetime | None = None) -> list[str]:
    """Vehicles whose connection record says DISCONNECTED (no longer listed by Smartcar, or
    access revoked) since at least `grace_hours` ago."""
    now = now or datetime.now(UTC)
    rows = read_connections(SmartcarLayout(lake)).filter(
        (pl.col("status") == "DISCONNECTED")
        & (pl.col("disconnected_at") <= pl.lit(now).cast(pl.Datetime("us", "UTC")) - pl.duration(
            seconds=round(grace_hours * 3600))))
    return sorted(rows.get_column("vehicle_id"))


@dg.op(description="Erase vehicles (and all of a user's vehicles) from the data directory; see pipelines/erasure.py.")
def erase_vehicles(context: dg.OpExecutionContext, config: EraseConfig, lake: LakeResource) -> dg.Output:
    from storage.resources import WarehouseResource

    resources = {"lake": lake, "warehouse": WarehouseResource(data_dir=lake.data_dir)}
    vehicles = list(config.vehicle_ids)
    if config.disconnected_for_hours is not None:
        vehicles += disconnected_vehicles(lake, config.disconnected_for_hours)
    if not vehicles and not config.user_ids:
        context.log.info("nothing to erase")
        return dg.Output(None, metadata={"records_removed": 0})
    outcome = erase(lake, vehicles, config.user_ids, build_step(context.instance, resources),
                    instance=context.instance, keep_runs={context.run_id}, log=context.log.info)
    # The receipt holds no id; nor does this run's metadata. Its run config does: the sensor
    # erase_run_cleanup deletes the run once it has succeeded.
    return dg.Output(None, metadata={"receipt": str(outcome.path), "records_removed": outcome.receipt["records_removed"],
                                     "files_rewritten": outcome.receipt["files_rewritten"]})


@dg.job(description="Erase vehicles or users (run config: ops.erase_vehicles.config.vehicle_ids / user_ids): "
                    "what `fleetlake erase` does.")
def erase_job():
    erase_vehicles()


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, monitored_jobs=[erase_job],
                      default_status=dg.DefaultSensorStatus.RUNNING,
                      description="Deletes each finished erase_job run (its run config names the ids it erased; "
                                  "the receipt holds what it did), then vacuums the instance's SQLite files.")
def erase_run_cleanup(context: dg.RunStatusSensorContext) -> None:
    context.instance.delete_run(context.dagster_run.run_id)
    if context.instance.root_directory:  # a SQLite instance: deleted rows leave no copy in free pages
        try:
            vacuum_sqlite(Path(context.instance.root_directory))
        except sqlite3.OperationalError as error:  # a writer holds the file: the next erasure vacuums
            context.log.warning(f"could not vacuum the instance's SQLite files now: {error}")
