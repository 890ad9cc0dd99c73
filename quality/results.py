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


def _age(hours: float) -> str:
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} hours"


def _number(value) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def failure_reason(detail: dict) -> str:
    """Why one failed outcome failed, in words: the expectation and what was observed."""
    if "expectation" in detail:  # a Great Expectations outcome (quality/gx_validation.py)
        where = f"{detail['column']}" if detail.get("column") else ""
        if detail.get("condition"):
            where += f" where {detail['condition']}"
        observed = f"{_number(detail['unexpected'])} of {_number(detail['checked'])} rows unexpected"
        if detail.get("examples"):
            observed += f", e.g. {', '.join(map(str, detail['examples'][:3]))}"
        return f"{detail['expectation']}({where}): {observed}"
    if "age_hours" in detail and "limit_hours" in detail:  # freshness
        if detail["age_hours"] is None:
            return "no delivery in the lake yet"
        return (f"newest delivery ({detail.get('newest_delivery')}) is {_age(detail['age_hours'])} old, "
                f"more than {_age(detail['limit_hours'])}")
    observed = [f"{k.replace('_', ' ')} {_number(v)}" for k, v in detail.items()
                if k != "success" and v not in (None, [], {})]
    return ", ".join(observed)


def failures_description(failures: dict[str, list[dict]], shown: int = 3) -> str:
    """The failed outcomes of a check, in words, the first `shown` of them, each with its scope
    (a day, or a batch) unless the check has one scope."""
    reasons = [(f"{scope}: " if scope != "all" else "") + failure_reason(d)
               for scope, details in failures.items() for d in details]
    more = f" (and {len(reasons) - shown} more)" if len(reasons) > shown else ""
    return "; ".join(reasons[:shown]) + more


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
        description=failures_description(failures) if failures else f"passed ({len(scoped)} checked)",
        severity=dg.AssetCheckSeverity.ERROR if spec.blocking else dg.AssetCheckSeverity.WARN,
        metadata={
            "scopes_checked": len(scoped),
            "scopes_failed": len(failures),
            "failures": dg.MetadataValue.json(dict(list(failures.items())[:10])),
        },
    )
