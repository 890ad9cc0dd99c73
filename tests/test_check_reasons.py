"""Every check says what it checks (its description in the UI) and, when it fails, why: the
failing expectation and what was observed, in the check result and the run summary."""

import dagster as dg

from pipelines.definitions import defs
from quality.results import check_result, failure_reason, failures_description
from storage.resources import LakeResource


def test_every_asset_check_has_a_description():
    specs = [s for a in defs.resolve_asset_graph().assets_defs for s in a.check_specs]
    assert len(specs) >= 12
    assert [s.key.to_user_string() for s in specs if not (s.description or "").strip()] == []


def test_a_failed_expectation_says_which_column_and_what_was_observed():
    gx = {"expectation": "expect_column_values_to_be_between", "column": "state_of_health_pct",
          "condition": None, "success": False, "checked": 12, "unexpected": 2, "examples": ["200.0", "180.5"]}
    assert failure_reason(gx) == ("expect_column_values_to_be_between(state_of_health_pct): 2 of 12 rows unexpected, "
                                  "e.g. 200.0, 180.5")


def test_stale_landing_says_how_old_the_newest_delivery_is():
    stale = {"success": False, "newest_delivery": "2026-09-30T23:45:00+00:00", "age_hours": 75.0,
             "limit_hours": 48.0}
    assert failure_reason(stale) == ("newest delivery (2026-09-30T23:45:00+00:00) is 3.1 days old, "
                                     "more than 2.0 days")
    assert failure_reason({**stale, "age_hours": None, "newest_delivery": None}) == "no delivery in the lake yet"


def test_an_accounting_failure_shows_its_counts_and_scope():
    balance = {"success": False, "raw_signals": 10, "signals_read": 7, "signal_errors": 1, "signals_quarantined": 1}
    many = {f"2026-09-0{d}": [balance] for d in range(1, 6)}
    assert failures_description(many) == (
        "2026-09-01: raw signals 10, signals read 7, signal errors 1, signals quarantined 1; "
        "2026-09-02: raw signals 10, signals read 7, signal errors 1, signals quarantined 1; "
        "2026-09-03: raw signals 10, signals read 7, signal errors 1, signals quarantined 1 (and 2 more)")


def test_the_check_result_carries_the_reason_for_dagster(tmp_path):
    spec = dg.AssetCheckSpec("landing_freshness", asset="raw_deliveries")
    lake = LakeResource(data_dir=str(tmp_path))
    failed = check_result(lake, spec, {"all": [{"success": False, "newest_delivery": None, "age_hours": None,
                                                "limit_hours": 48.0}]})
    assert not failed.passed and failed.description == "no delivery in the lake yet"
    passed = check_result(lake, spec, {"a": [{"success": True}], "b": [{"success": True}]})
    assert passed.passed and passed.description == "passed (2 checked)"
