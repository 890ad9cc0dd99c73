"""The raw layer: landing files ingested once each into raw deliveries, raw signals
(partitioned by the UTC day of their reading time), vehicle errors, duplicates and
quarantined lines.

On disk, one landing file is one batch. A batch's files are written first and its manifest
(`raw/_batches/<batch_id>.json`) last: the manifest is the commit. Readers only use files of
committed batches, and a batch interrupted before its commit is simply redone by the next
run, overwriting its own files. So a crash at any point leaves nothing half-visible, and
re-running gives the same lake.
"""


import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl

from assets.parsing import (FILE_QUARANTINE_SCHEMA, RawBatch, connect, empty_batch, file_batch_id, landing_content,
                            lines_frame, parse_lines)
from storage.files import write_parquet_atomic, write_text_atomic
from storage.layout import RawLayout, landing_files, landing_name, read_landing_file
from storage.partitions import reading_day
from storage.resources import LakeResource
from quality.accounting import batch_accounting
from quality.results import check_result

# A landing file that could not be opened or read: it is quarantined as a file, and tried
# again when it changes, including its permissions (which change its ctime, not its mtime).
UNREADABLE = "unreadable"


def write_batch(layout: RawLayout, batch: RawBatch, manifest: dict, quarantined_file: dict | None = None) -> dict:
    """Write one batch's files (and the record of its landing file, if that is quarantined),
    then its manifest (the commit). Returns the manifest."""
    batch_id = manifest["batch_id"]
    write_parquet_atomic(batch.deliveries, layout.table_file("deliveries", batch_id))
    write_parquet_atomic(batch.vehicle_errors, layout.table_file("vehicle_errors", batch_id))
    write_parquet_atomic(batch.duplicates, layout.table_file("duplicates", batch_id))
    write_parquet_atomic(batch.quarantine, layout.quarantine_file(batch_id))
    if quarantined_file is not None:
        write_parquet_atomic(pl.DataFrame([quarantined_file], schema=FILE_QUARANTINE_SCHEMA),
                             layout.file_quarantine_file(batch_id))
    ingested_at = datetime.fromisoformat(manifest["ingested_at"])
    signals = batch.signals.with_columns(ingested_at=pl.lit(ingested_at, pl.Datetime("us", "UTC")))
    signals = signals.with_columns(day=reading_day())
    days = sorted(signals.get_column("day").unique().to_list())
    for (day,), part in signals.partition_by("day", as_dict=True, maintain_order=True).items():
        write_parquet_atomic(part.drop("day"), layout.signals_file(day, batch_id))
    manifest = {**manifest, **batch.counts, "days": [d.isoformat() for d in days],
                "file_reason": quarantined_file["reason"] if quarantined_file else None}
    write_text_atomic(json.dumps(manifest, indent=1, sort_keys=True), layout.batches_dir / f"{batch_id}.json")
    return manifest


def seen_event_ids(layout: RawLayout) -> pl.Series:
    files = layout.committed_files("deliveries")
    if not files:
        return pl.Series("event_id", [], dtype=pl.String)
    return pl.scan_parquet(files).select("event_id").collect().get_column("event_id")


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


# New files are parsed in groups of about this many lines: one DuckDB pass per group keeps
# many small files cheap, and the group size bounds memory.
GROUP_LINES = 50_000


def _file_record(manifest: dict, landed_on, reason: str, detail: str | None, lines_kept: int) -> dict:
    return {"batch_id": manifest["batch_id"], "source_file": manifest["source_file"], "size": manifest["size"],
            "mtime_ns": manifest["mtime_ns"], "sha256": manifest["sha256"], "landed_on": landed_on,
            "reason": reason, "detail": detail, "lines_kept": lines_kept}


def ingest_landing(lake: LakeResource, log=None) -> list[dict]:
    """Ingest every landing file not yet ingested (or changed since), in path order. Each
    file is committed on its own. A file that cannot be read or decompressed never stops
    the others: it is quarantined as a file (a cut gzip keeps its complete lines). Returns
    the manifests this call committed."""
    layout = RawLayout(lake)
    committed = set(layout.committed)
    seen = seen_event_ids(layout)
    ingested_at = datetime.now(UTC).isoformat()
    done: list[dict] = []
    group: list[_Pending] = []
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
                    done.append(write_batch(layout, empty_batch(), {**manifest, "latest_delivered_at": None}, record))
                    _log(log, manifest, done[-1])
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
            group.append(_Pending(lines, manifest, record))
            if sum(p.lines.height for p in group) >= GROUP_LINES:
                seen = _ingest_group(layout, group, seen, con, done, log)
                group = []
        if group:
            _ingest_group(layout, group, seen, con, done, log)
    finally:
        con.close()
    return done


def _log(log, manifest: dict, written: dict) -> None:
    if log:
        reason = f" (file quarantined: {written['file_reason']})" if written.get("file_reason") else ""
        log.info(f"ingested {manifest['source_file']}{reason}: "
                 f"{ {k: written[k] for k in ('lines', 'parsed', 'duplicates', 'quarantined', 'signals')} }")


def _ingest_group(layout: RawLayout, group: list[_Pending], seen: pl.Series,
                  con, done: list[dict], log) -> pl.Series:
    parsed = parse_lines(pl.concat([p.lines for p in group]), seen_event_ids=seen, con=con)
    for pending in group:
        batch = parsed.of_batch(pending.manifest["batch_id"])
        # The newest delivery for freshness, of those not dated after their ingest: a clock
        # set to year 9999 does not make the lake look fresh.
        received = datetime.fromisoformat(pending.manifest["ingested_at"]) + timedelta(days=1)
        latest = batch.deliveries.filter(pl.col("delivered_at") <= received).get_column("delivered_at").max()
        done.append(write_batch(layout, batch, {**pending.manifest, "latest_delivered_at": _iso(latest)},
                                pending.quarantined_file))
        _log(log, pending.manifest, done[-1])
    return pl.concat([seen, parsed.deliveries.get_column("event_id")])


class RawIngestConfig(dg.Config):
    freshness_hours: float = 48.0  # the newest delivery should be younger than this


RAW_CHECKS = {spec.name: spec for spec in [
    dg.AssetCheckSpec("landed_lines_accounted", asset="raw_deliveries", blocking=True,
                      description="Every landed line of every batch is stored as a delivery, a duplicate or "
                                  "a quarantined record, and every signal is stored under its day."),
    dg.AssetCheckSpec("landing_freshness", asset="raw_deliveries",
                      description="The newest delivery in the lake is younger than `freshness_hours` (a warning)."),
]}


@dg.asset(group_name="lake", check_specs=list(RAW_CHECKS.values()), pool="lake", kinds={"parquet", "duckdb"})
def raw_deliveries(context: dg.AssetExecutionContext, config: RawIngestConfig, lake: LakeResource) -> dg.MaterializeResult:
    """Landing files ingested once each: parsed deliveries, raw signals by reading day,
    vehicle errors, duplicates, and quarantined lines with their original text."""
    layout = RawLayout(lake)
    manifests = ingest_landing(lake, log=context.log)
    accounting = check_result(lake, RAW_CHECKS["landed_lines_accounted"],
                               {m["batch_id"]: [batch_accounting(layout, m)] for m in manifests})

    all_manifests = layout.manifests()
    newest = max((m["latest_delivered_at"] for m in all_manifests if m.get("latest_delivered_at")), default=None)
    age_hours = (datetime.now(UTC) - datetime.fromisoformat(newest)).total_seconds() / 3600 if newest else None
    fresh = age_hours is not None and age_hours <= config.freshness_hours
    freshness = check_result(lake, RAW_CHECKS["landing_freshness"], {"all": [{
        "success": fresh, "newest_delivery": newest, "age_hours": age_hours, "limit_hours": config.freshness_hours}]})

    totals = {k: sum(m[k] for m in manifests) for k in ("landing_lines", "parsed", "duplicates", "quarantined", "signals")}
    totals["files_quarantined"] = sum(1 for m in manifests if m["file_reason"])
    days = sorted({d for m in manifests for d in m["days"]})
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
