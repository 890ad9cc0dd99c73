"""Check results kept on disk, where users read them (and `marts.quality_results` shows them)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import dagster as dg

from storage.files import write_text_atomic
from storage.resources import LakeResource


def record(lake: LakeResource, asset: str, check: str, passed: bool, scope: str, details: list[dict]) -> None:
    """One file per asset, check and scope (a day partition or 'all'); the latest result wins."""
    result = {
        "asset": asset, "check": check, "scope": scope, "passed": passed,
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"), "details": details,
    }
    write_text_atomic(json.dumps(result, default=str, indent=1), lake.path("quality", asset, check, f"{scope}.json"))


def check_result(lake: LakeResource, asset: str, check: str, scoped: dict[str, list[dict]],
                 severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckResult:
    """Record each scope's outcome and fold them into one Dagster check result.

    `scoped` maps a scope to its outcome dicts; an outcome fails when its `success` is false."""
    failures: dict[str, list[dict]] = {}
    for scope, details in scoped.items():
        failed = [d for d in details if not d["success"]]
        record(lake, asset, check, not failed, scope, details)
        if failed:
            failures[scope] = failed
    return dg.AssetCheckResult(
        check_name=check,
        passed=not failures,
        severity=severity,
        metadata={
            "scopes_checked": len(scoped),
            "scopes_failed": len(failures),
            "failures": dg.MetadataValue.json(dict(list(failures.items())[:10])),
        },
    )
