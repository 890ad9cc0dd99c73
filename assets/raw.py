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
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl

from assets.parsing import RawBatch, connect, file_batch_id, parse_lines, read_landing_lines
from storage.files import write_parquet_atomic, write_text_atomic
from storage.layout import RawLayout, landing_files
from storage.partitions import reading_day
from storage.resources import LakeResource
from quality.accounting import batch_accounting
from quality.results import check_result

def write_batch(layout: RawLayout, batch: RawBatch, manifest: dict) -> dict:
    """Write one batch's files, then its manifest (the commit). Returns the manifest."""
    batch_id = manifest["batch_id"]
    write_parquet_atomic(batch.deliveries, layout.table_file("deliveries", batch_id))
    write_parquet_atomic(batch.vehicle_errors, layout.table_file("vehicle_errors", batch_id))
    write_parquet_atomic(batch.duplicates, layout.table_file("duplicates", batch_id))
    write_parquet_atomic(batch.quarantine, layout.quarantine_file(batch_id))
    signals = batch.signals.with_columns(day=reading_day())
    days = sorted(signals.get_column("day").unique().to_list())
    for (day,), part in signals.partition_by("day", as_dict=True, maintain_order=True).items():
        write_parquet_atomic(part.drop("day"), layout.signals_file(day, batch_id))
    manifest = {**manifest, **batch.counts, "days": [d.isoformat() for d in days]}
    write_text_atomic(json.dumps(manifest, indent=1, sort_keys=True), layout.batches_dir / f"{batch_id}.json")
    return manifest


def seen_event_ids(layout: RawLayout) -> pl.Series:
    files = layout.committed_files("deliveries")
    if not files:
        return pl.Series("event_id", [], dtype=pl.String)
    return pl.scan_parquet(files).select("event_id").collect().get_column("event_id")


def _iso(moment) -> str | None:
    return moment.isoformat() if moment is not None else None


def unseen_landing_files(layout: RawLayout) -> list[tuple[Path, str, os.stat_result]]:
    """Landing files (path, path relative to landing, stat) whose path, size and modification
    time no batch manifest records: new files, or files changed or touched since."""
    landing = layout.lake.landing
    known = {(m["source_file"], m["size"], m["mtime_ns"]) for m in layout.manifests()}
    unseen = []
    for path in landing_files(landing):
        relative, stat = path.relative_to(landing).as_posix(), path.stat()
        if (relative, stat.st_size, stat.st_mtime_ns) not in known:
            unseen.append((path, relative, stat))
    return unseen


# New files are parsed in groups of about this many lines: one DuckDB pass per group keeps
# many small files cheap, and the group size bounds memory.
GROUP_LINES = 50_000


def ingest_landing(lake: LakeResource, log=None) -> list[dict]:
    """Ingest every landing file not yet ingested (or changed since), in path order. Each
    file is committed on its own. Returns the manifests this call committed."""
    layout = RawLayout(lake)
    committed = set(layout.committed)
    seen = seen_event_ids(layout)
    done: list[dict] = []
    group: list[tuple[pl.DataFrame, dict]] = []
    con = connect()
    try:
        for path, relative, stat in unseen_landing_files(layout):
            content_sha = hashlib.sha256(path.read_bytes()).hexdigest()
            batch_id = file_batch_id(relative, content_sha)
            if batch_id in committed:  # same content, only touched
                continue
            lines = read_landing_lines(path, source_file=relative, batch_id=batch_id,
                                       landed_on=datetime.fromtimestamp(stat.st_mtime, UTC).date())
            group.append((lines, {"batch_id": batch_id, "source_file": relative, "size": stat.st_size,
                                  "mtime_ns": stat.st_mtime_ns, "sha256": content_sha,
                                  "landing_lines": lines.height}))
            if sum(lines.height for lines, _ in group) >= GROUP_LINES:
                seen = _ingest_group(layout, group, seen, con, done, log)
                group = []
        if group:
            _ingest_group(layout, group, seen, con, done, log)
    finally:
        con.close()
    return done


def _ingest_group(layout: RawLayout, group: list[tuple[pl.DataFrame, dict]], seen: pl.Series,
                  con, done: list[dict], log) -> pl.Series:
    parsed = parse_lines(pl.concat([lines for lines, _ in group]), seen_event_ids=seen, con=con)
    for _, manifest in group:
        batch = parsed.of_batch(manifest["batch_id"])
        latest = batch.deliveries.get_column("delivered_at").max()
        done.append(write_batch(layout, batch, {**manifest, "latest_delivered_at": _iso(latest)}))
        if log:
            log.info(f"ingested {manifest['source_file']}: {batch.counts}")
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
    days = sorted({d for m in manifests for d in m["days"]})
    preview = "\n".join(f"| {m['source_file']} | {m['landing_lines']} | {m['parsed']} | {m['duplicates']} | "
                        f"{m['quarantined']} |" for m in manifests[:10])
    return dg.MaterializeResult(
        metadata={
            "new_files": len(manifests), **{f"new_{k}": v for k, v in totals.items()},
            "days_touched": dg.MetadataValue.json(days),
            "preview": dg.MetadataValue.md("| file | lines | parsed | duplicates | quarantined |\n|---|---|---|---|---|\n"
                                           + preview),
        },
        check_results=[accounting, freshness],
    )
