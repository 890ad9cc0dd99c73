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


def check_result(lake: LakeResource, spec: dg.AssetCheckSpec, scoped: dict[str, list[dict]]) -> dg.AssetCheckResult:
    """Record each scope's outcome and fold them into one Dagster check result for `spec`.

    `scoped` maps a scope to its outcome dicts; an outcome fails when its `success` is false.
    The severity follows from where the check is declared: a failed blocking check is an
    ERROR (it stops what depends on it), a failed non-blocking one a WARN (reported, and the
    build goes on)."""
    asset = spec.asset_key.path[-1]
    failures: dict[str, list[dict]] = {}
    for scope, details in scoped.items():
        failed = [d for d in details if not d["success"]]
        record(lake, asset, spec.name, not failed, scope, details)
        if failed:
            failures[scope] = failed
    return dg.AssetCheckResult(
        asset_key=spec.asset_key,
        check_name=spec.name,
        passed=not failures,
        severity=dg.AssetCheckSeverity.ERROR if spec.blocking else dg.AssetCheckSeverity.WARN,
        metadata={
            "scopes_checked": len(scoped),
            "scopes_failed": len(failures),
            "failures": dg.MetadataValue.json(dict(list(failures.items())[:10])),
        },
    )
