"""The raw layer: landing files ingested once each into raw deliveries, raw signals
(partitioned by the UTC day of their reading time), vehicle errors, duplicates and
quarantined lines.

New landing files are parsed in groups; one landing file is one batch. A group's rows go
into each raw Delta table in one commit per table, tagged with the group's `ingest_seq`, and
its batches into `raw/batches` last: that commit is the group's. Readers leave out rows of a
later `ingest_seq` than `raw/batches` holds, and an ingest first deletes them: a group cut
short by a crash is simply redone. So a crash at any point leaves nothing half-visible, and
re-running gives the same lake.
"""


import hashlib
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl

from assets.parsing import (FILE_QUARANTINE_SCHEMA, RawBatch, connect, empty_batch, file_batch_id, landing_content,
                            lines_frame, parse_lines)
from storage import tables
from storage.erased_record import USER, VEHICLE, ErasedRecord
from storage.erasure import belongs_to, rewrite_landing_file, search_terms
from storage.layout import BATCHES_SCHEMA, ERASED_SCHEMA, RAW_TABLES, RawLayout, landing_files, landing_name, read_landing_file
from storage.memory import release_freed_memory
from storage.partitions import reading_day, record_reading_days
from storage.resources import LakeResource
from quality.accounting import batch_accounting
from quality.results import check_result

# A landing file that could not be opened or read: it is quarantined as a file, and tried
# again when it changes, including its permissions (which change its ctime, not its mtime).
UNREADABLE = "unreadable"


@dataclass
class _Written:
    """One landing file's share of a group: its parsed batch, manifest and file record."""
    batch: RawBatch
    manifest: dict
    quarantined_file: dict | None = None
    erased: pl.DataFrame | None = None  # lines of erased vehicles dropped: batch_id, landed_on, lines


def write_group(layout: RawLayout, seq: int, group: list[_Written]) -> list[dict]:
    """Write one ingest group: its rows into each raw table (one commit each), then its
    batches (the group's commit). Returns the batches' manifests."""
    tag = pl.lit(seq, pl.Int64).alias("ingest_seq")
    for table in ("deliveries", "vehicle_errors", "duplicates", "quarantine"):
        frame = pl.concat([getattr(w.batch, table) for w in group])
        if frame.height:
            tables.append(layout.table_dir(table), frame.with_columns(tag))
    erased = [w.erased for w in group if w.erased is not None and w.erased.height]
    if erased:
        tables.append(layout.table_dir("erased"), pl.concat(erased).with_columns(tag))
    records = [w.quarantined_file for w in group if w.quarantined_file is not None]
    if records:
        tables.append(layout.table_dir("quarantined_files"),
                      pl.DataFrame(records, schema=FILE_QUARANTINE_SCHEMA).with_columns(tag))
    manifests = []
    signals = []
    for w in group:
        ingested_at = datetime.fromisoformat(w.manifest["ingested_at"])
        batch_signals = w.batch.signals.with_columns(ingested_at=pl.lit(ingested_at, pl.Datetime("us", "UTC")))
        batch_signals = batch_signals.with_columns(day=reading_day())
        days = sorted(batch_signals.get_column("day").unique().to_list())
        signals.append(batch_signals)
        erased_lines = int(w.erased.get_column("lines").sum()) if w.erased is not None else 0
        counts = {**w.batch.counts, "erased": erased_lines}
        counts["lines"] += erased_lines
        manifests.append({**w.manifest, **counts, "days": [d.isoformat() for d in days],
                          "file_reason": w.quarantined_file["reason"] if w.quarantined_file else None,
                          "ingest_seq": seq})
    signals = pl.concat(signals)
    if signals.height:
        tables.append(layout.table_dir("signals"), signals.with_columns(tag), partition_by=["day"])
    tables.append(layout.batches_table, pl.DataFrame(manifests, schema=BATCHES_SCHEMA))
    return manifests


def discard_cut_ingest(layout: RawLayout) -> None:
    """Delete the rows an ingest cut short left in the raw tables (a later `ingest_seq` than
    the last committed group): found from the tables' file statistics, without reading data."""
    for table in RAW_TABLES:
        path = layout.table_dir(table)
        stats = tables.files(path)
        if stats.height and ("max.ingest_seq" not in stats.columns
                             or (stats.get_column("max.ingest_seq").max() or 0) > layout.committed_seq):
            tables.delete(path, f"ingest_seq > {layout.committed_seq}")


def vacuum_raw(lake: LakeResource) -> int:
    """Delete the raw tables' files that no version within the lake's retention uses."""
    layout = RawLayout(lake)
    return sum(tables.vacuum(path, lake.retention_hours)
               for path in [layout.batches_table, *map(layout.table_dir, RAW_TABLES)])


def seen_event_ids(layout: RawLayout, event_ids: pl.Series) -> pl.Series:
    """Which of these eventIds the lake already holds a delivery of. Within an ingest (after
    `discard_cut_ingest`) every row of `raw/deliveries` is committed or this ingest's own, so
    the table is read as it stands; only its `event_id` column is read, in a streaming
    scan, so memory grows with the group, not with the history."""
    path = layout.table_dir("deliveries")
    if not tables.exists(path) or event_ids.is_empty():
        return pl.Series("event_id", [], pl.String)
    return (tables.scan(path, pl.Schema()).select("event_id").filter(pl.col("event_id").is_in(event_ids.implode()))
            .collect(engine="streaming").get_column("event_id"))


def without_seen(parsed: RawBatch, seen: pl.Series) -> RawBatch:
    """A parse with the deliveries of eventIds seen before moved to its duplicates (with
    their signals and errors dropped), as if `parse_lines` had been given them."""
    if seen.is_empty():
        return parsed
    again = pl.col("event_id").is_in(seen.implode())
    moved = parsed.deliveries.filter(again).select(parsed.duplicates.columns)
    return RawBatch(
        deliveries=parsed.deliveries.filter(~again), signals=parsed.signals.filter(~again),
        vehicle_errors=parsed.vehicle_errors.filter(~again), quarantine=parsed.quarantine,
        duplicates=pl.concat([parsed.duplicates, moved]).sort("batch_id", "line_no", maintain_order=True))


# A JSON string in a line that could not be parsed: where an id may be mentioned.
_JSON_STRING = r'"((?:[^"\\]|\\.){1,256})"'


def without_erased(parsed: RawBatch, record: ErasedRecord) -> tuple[RawBatch, pl.DataFrame, set[str]]:
    """A parse with every line of an erased vehicle or user left out (deliveries with their
    signals and errors, duplicates, quarantined lines, and malformed lines that mention an
    erased id in one of their strings), the count of lines left out per batch and landing
    day, and the erased ids met (to remove their lines from landing). Nothing of them is kept."""
    if not record.path.exists():
        return parsed, ERASED_SCHEMA.to_frame(), set()
    d = parsed.deliveries
    vehicles = record.erased_among(VEHICLE, pl.concat([
        d.get_column("vehicle_id"), parsed.duplicates.get_column("vehicle_id"),
        parsed.quarantine.get_column("vehicle_id")]).drop_nulls().unique().to_list())
    users = record.erased_among(USER, d.get_column("user_id").drop_nulls().unique().to_list())
    dropped_events = d.filter(pl.col("vehicle_id").is_in(list(vehicles)).fill_null(False)
                              | pl.col("user_id").is_in(list(users)).fill_null(False))
    dropped_events = dropped_events.get_column("event_id").implode()
    # A null id is nobody's: every condition is false, never null, where an id is missing.
    by_event = pl.col("event_id").is_in(dropped_events).fill_null(False)
    by_vehicle = pl.col("vehicle_id").is_in(list(vehicles)).fill_null(False)
    unnamed = (pl.col("vehicle_id").is_null() | (pl.col("vehicle_id").str.strip_chars() == "")).fill_null(True)
    quarantine = parsed.quarantine.with_columns(strings=pl.col("raw_text").str.extract_all(_JSON_STRING))
    mentioned = record.erased_among(VEHICLE, quarantine.filter(unnamed).get_column("strings").explode()
                                    .drop_nulls().str.strip_chars('"').unique().to_list())
    mentioned |= record.erased_among(USER, quarantine.filter(unnamed).get_column("strings").explode()
                                     .drop_nulls().str.strip_chars('"').unique().to_list())
    quarantined_erased = by_vehicle | (unnamed & pl.col("strings").list.eval(
        pl.element().str.strip_chars('"').is_in(list(mentioned))).list.any().fill_null(False))
    drop = {"deliveries": by_event, "signals": by_event, "vehicle_errors": by_event, "duplicates": by_vehicle | by_event}
    kept = RawBatch(**{name: getattr(parsed, name).filter(~cond) for name, cond in drop.items()},
                    quarantine=quarantine.filter(~quarantined_erased).drop("strings"))
    lines = pl.concat([
        parsed.deliveries.filter(by_event).select("batch_id", "landed_on"),
        parsed.duplicates.filter(by_vehicle | by_event).select("batch_id", "landed_on"),
        quarantine.filter(quarantined_erased).select("batch_id", "landed_on"),
    ])
    counted = lines.group_by("batch_id", "landed_on").agg(lines=pl.len().cast(pl.Int64))
    return kept, counted.select(ERASED_SCHEMA.names()).cast(dict(ERASED_SCHEMA)), vehicles | users | mentioned


def _iso(moment) -> str | None:
    return moment.isoformat() if moment is not None else None


def _version(source_file: str, stat_or_manifest) -> tuple:
    """What identifies a version of a landing file without reading it: path, size and mtime."""
    if isinstance(stat_or_manifest, dict):
        return source_file, stat_or_manifest["size"], stat_or_manifest["mtime_ns"]
    return source_file, stat_or_manifest.st_size, stat_or_manifest.st_mtime_ns


def unseen_landing_files(layout: RawLayout) -> list[tuple[Path, str, os.stat_result]]:
    """Landing files (path, name relative to landing, lstat) whose path, size and
    modification time no batch manifest records: new files, or files changed or touched
    since. A file quarantined as unreadable stays seen until its ctime changes too."""
    landing = layout.lake.landing
    known, unreadable = set(), set()
    for m in layout.manifests():
        if m.get("file_reason") == UNREADABLE:
            unreadable.add((*_version(m["source_file"], m), m["ctime_ns"]))
        else:
            known.add(_version(m["source_file"], m))
    unseen = []
    for path in landing_files(landing):
        relative = landing_name(path.relative_to(landing).as_posix())
        try:
            stat = path.lstat()
        except FileNotFoundError:
            continue
        version = _version(relative, stat)
        if version not in known and (*version, stat.st_ctime_ns) not in unreadable:
            unseen.append((path, relative, stat))
    return unseen


@dataclass
class _Pending:
    """A landing file read, waiting to be parsed with its group."""
    lines: pl.DataFrame
    manifest: dict
    quarantined_file: dict | None
    path: Path | None = None


# New files are parsed in groups of at most this many lines (or one larger file): one DuckDB
# pass per group keeps many small files cheap, and the group size bounds memory.
GROUP_LINES = 25_000


def _file_record(manifest: dict, landed_on, reason: str, detail: str | None, lines_kept: int) -> dict:
    return {"batch_id": manifest["batch_id"], "source_file": manifest["source_file"], "size": manifest["size"],
            "mtime_ns": manifest["mtime_ns"], "sha256": manifest["sha256"], "landed_on": landed_on,
            "reason": reason, "detail": detail, "lines_kept": lines_kept}


def ingest_landing(lake: LakeResource, log=None) -> list[dict]:
    """Ingest every landing file not yet ingested (or changed since), in path order, in
    groups of at most GROUP_LINES lines (or one larger file), each committed on its own. A
    file that cannot be read or decompressed never stops the others: it is quarantined as a file (a cut gzip keeps
    its complete lines). Returns the manifests this call committed."""
    layout = RawLayout(lake)
    discard_cut_ingest(layout)
    committed = set(layout.committed)
    ingested_at = datetime.now(UTC).isoformat()
    done: list[dict] = []
    group: list[_Pending] = []
    seq = [layout.committed_seq]  # the last group committed; each group takes the next
    # A group is written while the next one is parsed (both mostly outside Python), one
    # group at a time and in order: the next group is checked against the lake for its
    # eventIds only once the one before is committed.
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-writer")
    writing: list[Future] = []

    def settle() -> None:
        """Wait until the group being written is committed (raising what its write raised)."""
        while writing:
            for manifest in writing.pop().result():
                done.append(manifest)
                _log(log, manifest, manifest)

    def commit(written: list[_Written]) -> None:
        settle()
        seq[0] += 1
        writing.append(writer.submit(write_group, layout, seq[0], written))

    con = connect()
    try:
        for path, relative, stat in unseen_landing_files(layout):
            landed_on = datetime.fromtimestamp(stat.st_mtime, UTC).date()
            own_name = path.relative_to(lake.landing).as_posix()  # its bytes, even if they are not UTF-8
            manifest = {"source_file": relative, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                        "ctime_ns": stat.st_ctime_ns, "ingested_at": ingested_at}
            try:
                data = read_landing_file(path, stat)
            except OSError as error:
                version = f"{UNREADABLE}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}"
                manifest |= {"batch_id": file_batch_id(own_name, version), "sha256": None, "landing_lines": 0}
                if manifest["batch_id"] not in committed:
                    why = f"{type(error).__name__}: {error.strerror or error}"
                    record = _file_record(manifest, landed_on, UNREADABLE, why, 0)
                    commit([_Written(empty_batch(), {**manifest, "latest_delivered_at": None}, record)])
                continue
            if data is None:  # gone or replaced since it was listed: the next run sees what is there
                continue
            content_sha = hashlib.sha256(data).hexdigest()
            manifest |= {"batch_id": file_batch_id(own_name, content_sha), "sha256": content_sha}
            if manifest["batch_id"] in committed:  # same content, only touched
                continue
            content = landing_content(path.name, data)
            lines = lines_frame(content.lines, source_file=relative, batch_id=manifest["batch_id"], landed_on=landed_on)
            manifest["landing_lines"] = lines.height
            record = (_file_record(manifest, landed_on, content.fault, content.detail, lines.height)
                      if content.fault else None)
            # a group never grows past GROUP_LINES with a whole file more (a larger file is a group of its own)
            if group and sum(p.lines.height for p in group) + lines.height > GROUP_LINES:
                _ingest_group(layout, group, con, commit, settle)
                group = []
                release_freed_memory()
            group.append(_Pending(lines, manifest, record, path))
        if group:
            _ingest_group(layout, group, con, commit, settle)
        settle()
    finally:
        writer.shutdown(wait=True)
        con.close()
    return done


def _log(log, manifest: dict, written: dict) -> None:
    if log:
        reason = f" (file quarantined: {written['file_reason']})" if written.get("file_reason") else ""
        log.info(f"ingested {manifest['source_file']}{reason}: "
                 f"{ {k: written[k] for k in ('lines', 'parsed', 'duplicates', 'quarantined', 'signals')} }")


def _ingest_group(layout: RawLayout, group: list[_Pending], con, commit, settle) -> None:
    # Parsed first, then (once the group before is committed) checked against the lake for
    # the eventIds the group holds: the lake's eventIds are never all loaded.
    parsed = parse_lines(pl.concat([p.lines for p in group]), con=con)
    settle()
    parsed, erased, met = without_erased(parsed, ErasedRecord(layout.lake.root))
    parsed = without_seen(parsed, seen_event_ids(layout, parsed.deliveries.get_column("event_id")))
    written = []
    for pending in group:
        if met and pending.path is not None and erased.filter(pl.col("batch_id") == pending.manifest["batch_id"]).height:
            forget_in_landing(pending, met)
        batch = parsed.of_batch(pending.manifest["batch_id"])
        # The newest delivery for freshness, of those not dated after their ingest: a clock
        # set to year 9999 does not make the lake look fresh.
        received = datetime.fromisoformat(pending.manifest["ingested_at"]) + timedelta(days=1)
        latest = batch.deliveries.filter(pl.col("delivered_at") <= received).get_column("delivered_at").max()
        written.append(_Written(batch, {**pending.manifest, "latest_delivered_at": _iso(latest)},
                                pending.quarantined_file,
                                erased.filter(pl.col("batch_id") == pending.manifest["batch_id"])))
    commit(written)


def forget_in_landing(pending: _Pending, ids: set[str]) -> None:
    """A landing file that brought lines of an erased vehicle (a retry, a replay) is
    rewritten without them, and its batch records the file as it is now, so that it is
    not taken for a new one. The batch keeps its id and counts: its lines as they landed."""
    terms = search_terms(ids)
    rewritten = rewrite_landing_file(pending.path, belongs_to(ids, ids, terms), terms)
    if rewritten is not None:
        pending.manifest.update(size=rewritten.size, mtime_ns=rewritten.mtime_ns, ctime_ns=rewritten.ctime_ns,
                                sha256=rewritten.sha256)


class RawIngestConfig(dg.Config):
    freshness_hours: float = 48.0  # the newest delivery should be younger than this


RAW_CHECKS = {spec.name: spec for spec in [
    dg.AssetCheckSpec("landed_lines_accounted", asset="raw_deliveries", blocking=True,
                      description="Every landed line of every batch is stored as a delivery, a duplicate or "
                                  "a quarantined record, and every signal is stored under its day."),
    dg.AssetCheckSpec("landing_freshness", asset="raw_deliveries",
                      description="The newest delivery in the lake is younger than `freshness_hours` (a warning)."),
]}


@dg.asset(group_name="lake", check_specs=list(RAW_CHECKS.values()), pool="lake", kinds={"delta", "duckdb"})
def raw_deliveries(context: dg.AssetExecutionContext, config: RawIngestConfig, lake: LakeResource) -> dg.MaterializeResult:
    """Landing files ingested once each: parsed deliveries, raw signals by reading day,
    vehicle errors, duplicates, and quarantined lines with their original text."""
    layout = RawLayout(lake)
    manifests = ingest_landing(lake, log=context.log)
    accounting = check_result(lake, RAW_CHECKS["landed_lines_accounted"],
                               {row["batch_id"]: [row] for row in batch_accounting(RawLayout(lake), manifests)})
    vacuum_raw(lake)

    all_manifests = RawLayout(lake).manifests()
    newest = max((m["latest_delivered_at"] for m in all_manifests if m.get("latest_delivered_at")), default=None)
    age_hours = (datetime.now(UTC) - datetime.fromisoformat(newest)).total_seconds() / 3600 if newest else None
    fresh = age_hours is not None and age_hours <= config.freshness_hours
    freshness = check_result(lake, RAW_CHECKS["landing_freshness"], {"all": [{
        "success": fresh, "newest_delivery": newest, "age_hours": age_hours, "limit_hours": config.freshness_hours}]})

    totals = {k: sum(m[k] for m in manifests)
              for k in ("landing_lines", "parsed", "duplicates", "quarantined", "erased", "signals")}
    totals["files_quarantined"] = sum(1 for m in manifests if m["file_reason"])
    days = sorted({d for m in manifests for d in m["days"]})
    # However the ingest was launched (command, UI, sensor), the reading partitions then reach back to its days.
    record_reading_days(lake.root, [date.fromisoformat(d) for d in days])
    preview = "\n".join(f"| {m['source_file']} | {m['landing_lines']} | {m['parsed']} | {m['duplicates']} | "
                        f"{m['quarantined']} | {m['file_reason'] or ''} |" for m in manifests[:10])
    return dg.MaterializeResult(
        metadata={
            "new_files": len(manifests), **{f"new_{k}": v for k, v in totals.items()},
            "days_touched": dg.MetadataValue.json(days),
            "preview": dg.MetadataValue.md("| file | lines | parsed | duplicates | quarantined | file quarantined |\n"
                                           "|---|---|---|---|---|---|\n"
                                           + preview),
        },
        check_results=[accounting, freshness],
    )
