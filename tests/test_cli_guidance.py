"""The command line guides: options before or after the subcommand, help with defaults, a
data directory that must exist (`fleetlake init` makes one), whole-number counts, summaries,
and a clear message for every statement that is not one."""

import argparse
import json
import stat
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from pipelines.cli import main as fleetlake
from pipelines.cli import parser
from pipelines.reports.maintenance import attention_table
from pipelines.reports.statements import status_summary

REPO = Path(__file__).parents[1]


@pytest.fixture(autouse=True)
def restore_settings(monkeypatch):
    monkeypatch.delenv("FLEETLAKE_DATA_DIR", raising=False)  # the command sets it; restored afterwards
    monkeypatch.delenv("DAGSTER_HOME", raising=False)


def status_and_output(argv, capsys) -> tuple[int, str, str]:
    try:
        status = fleetlake(argv)
    except SystemExit as exited:
        status = exited.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return status, out, err


def subcommands() -> dict[str, argparse.ArgumentParser]:
    [commands] = [a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(commands.choices)


@pytest.mark.parametrize("argv", [
    ["--data-dir", "here", "-v", "run"],
    ["run", "--data-dir", "here", "-v"],
    ["-v", "run", "--data-dir", "here"],
    ["--data-dir", "elsewhere", "run", "--data-dir", "here", "--verbose"],  # the later one wins
])
def test_common_options_go_before_or_after_the_subcommand(argv):
    args = parser().parse_args(argv)
    assert (args.command, args.data_dir, args.verbose) == ("run", "here", True)


def test_without_the_options_the_defaults_apply(monkeypatch):
    args = parser().parse_args(["maintenance"])
    assert (args.data_dir, args.verbose, args.due_within) == ("data", False, 30.0)
    monkeypatch.setenv("FLEETLAKE_DATA_DIR", "/srv/fleet")
    assert parser().parse_args(["run"]).data_dir == "/srv/fleet"


def test_every_option_of_every_command_has_help_and_names_its_default():
    for name, sub in {"fleetlake": parser(), **subcommands()}.items():
        text = " ".join(sub.format_help().split())
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, (name, action.dest)
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS) \
                    and not action.required and action.dest != "help":
                assert f"(default: {action.default})" in text, (name, action.dest)
        if name != "fleetlake":
            assert "--data-dir DIR" in text and "(default: data)" in text, name
    simulate = " ".join(subcommands()["simulate"].format_help().split())
    for shown in ("(default: 50)", "(default: 30)", "(default: 15)", "(default: 7)", "(default: 2026-09-01)"):
        assert shown in simulate


def test_run_refuses_a_mistyped_data_dir_and_says_where_landing_is_expected(tmp_path, capsys):
    typo = tmp_path / "dta"
    status, out, err = status_and_output(["run", "--data-dir", str(typo)], capsys)
    assert status == 2
    assert (f"fleetlake run: error: no data directory at {typo}: landing files (Smartcar deliveries, *.ndjson or "
            f"*.ndjson.gz) are expected in {typo}/landing/; `fleetlake init {typo}` creates it") in err
    assert not typo.exists()
    (tmp_path / "notes.txt").write_text("")  # a directory that is no data directory
    status, out, err = status_and_output(["run", "--data-dir", str(tmp_path)], capsys)
    assert status == 2
    assert f"{tmp_path} is not a Fleetlake data directory (it has no landing/)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing was created


def test_init_creates_an_owner_only_data_dir_with_landing_and_its_dagster_instance(tmp_path, capsys):
    made = tmp_path / "fleet"
    status, out, err = status_and_output(["init", str(made)], capsys)
    assert status == 0, err
    assert f"created the data directory {made}" in out and f"{made / 'landing'}/" in out
    assert (made / "landing").is_dir()
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    settings = (made / "dagster" / "dagster.yaml").read_text()
    assert "default_limit: 1" in settings
    status, out, err = status_and_output(["--data-dir", str(made), "init"], capsys)  # again: nothing to do
    assert status == 0 and "is a data directory already" in out
    a_file = tmp_path / "file"
    a_file.write_text("")
    status, out, err = status_and_output(["init", str(a_file)], capsys)
    assert status == 2 and f"the data directory {a_file} is not a directory" in err


def test_init_in_a_real_process_makes_a_dir_that_run_accepts(tmp_path, capsys):
    made = tmp_path / "fleet"
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "init", str(made)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    from storage.data_dir import existing_data_dir

    assert existing_data_dir(made) == made  # what `run` checks first


def test_maintenance_counts_trouble_codes_in_whole_numbers():
    rows = pl.DataFrame([{"predicted_due_date": None, "urgency": "URGENT", "vehicle_id": "v1",
                          "component": "diagnostics", "current_value": 1.0, "unit": "codes", "trend_per_day": None,
                          "predicted_due_odometer_km": None, "finding": "ACTIVE_CODES", "detail": "P0301"},
                         {"predicted_due_date": None, "urgency": "OK", "vehicle_id": "v1", "component": "engine_oil",
                          "current_value": 64.25, "unit": "percent", "trend_per_day": -0.5,
                          "predicted_due_odometer_km": None, "finding": None, "detail": None}])
    table = attention_table(rows)
    assert " 1 codes " in table and "1.0 codes" not in table
    assert "64.2 percent" in table or "64.3 percent" in table


def test_a_statement_of_many_vehicles_ends_with_a_summary_by_status():
    vehicles = [{"status": "VERIFIED", "distance_km": 100.0}, {"status": "VERIFIED", "distance_km": 20.5},
                {"status": "NEEDS_REVIEW", "distance_km": 1234.0}, {"status": "INSUFFICIENT_DATA", "distance_km": None}]
    assert status_summary(vehicles) == ("summary: 4 vehicles: 2 VERIFIED (120.5 km), 1 NEEDS_REVIEW (1,234.0 km), "
                                        "1 INSUFFICIENT_DATA (0.0 km)")


READING = {"reading_time": "2026-09-01T08:00:00.000000Z", "odometer_km": 10.0}


@pytest.mark.parametrize(("content", "reason"), [
    ("", "not JSON (Expecting value: line 1 column 1 (char 0))"),
    ("{not json", "not JSON (Expecting property name enclosed in double quotes"),
    (b"\xff\xfe", "'utf-8' codec can't decode"),
    ("[]", "a statement is a JSON object, this is a JSON list"),
    ("42", "a statement is a JSON object, this is a JSON int"),
    ({}, "it has no `vehicles` list"),
    ({"vehicles": {"v": 1}}, "its `vehicles` is not a list"),
    ({"vehicles": ["v"]}, "vehicle 1 is not a JSON object"),
    ({"vehicles": [{"vehicle_id": "v"}]}, "vehicle 1 has no `evidence_sha256`"),
    ({"vehicles": [{"vehicle_id": 7, "evidence_sha256": "x", "evidence": []}]},
     "vehicle 1's `vehicle_id` is not a string"),
    ({"vehicles": [{"vehicle_id": "v", "evidence_sha256": "x", "evidence": "none"}]},
     "vehicle 1's `evidence` is not a list"),
    ({"vehicles": [{"vehicle_id": "v", "evidence_sha256": "x", "evidence": [{"odometer_km": 1}]}]},
     "evidence reading 1 of vehicle 1 (v) has no `reading_time`"),
    ({"vehicles": [{"vehicle_id": "v", "evidence_sha256": "x", "evidence": [{**READING, "odometer_km": "10"}]}]},
     "evidence reading 1 of vehicle 1 (v): `odometer_km` is not a number"),
    ({"vehicles": [{"vehicle_id": "v", "evidence_sha256": "x", "evidence": [{**READING, "reading_time": "soon"}]}]},
     "evidence reading 1 of vehicle 1 (v): `reading_time` is not an ISO 8601 time"),
    ({"vehicles": [{"vehicle_id": "v", "evidence_sha256": "x", "evidence": [{**READING, "reading_time": 5}]}]},
     "evidence reading 1 of vehicle 1 (v): `reading_time` is not an ISO 8601 time"),
])
def test_check_statement_says_what_is_wrong_with_a_malformed_statement(tmp_path, capsys, content, reason):
    path = tmp_path / "statement.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    status, out, err = status_and_output(["check-statement", str(path)], capsys)
    assert status == 2
    assert f"fleetlake check-statement: error: not a readable mileage statement: {path}: {reason}" in err
    assert err.count("\n") == 1  # one line


def test_check_statement_on_a_missing_file(tmp_path, capsys):
    status, out, err = status_and_output(["check-statement", str(tmp_path / "gone.json")], capsys)
    assert status == 2 and err.strip().endswith("gone.json: no such file")


def test_a_well_formed_statement_with_a_wrong_digest_is_altered_not_malformed(tmp_path, capsys):
    path = tmp_path / "statement.json"
    path.write_text(json.dumps({"vehicles": [{"vehicle_id": "v", "evidence_sha256": "0" * 64, "evidence": [READING]}]}))
    status, out, err = status_and_output(["check-statement", str(path)], capsys)
    assert status == 1 and "ALTERED: the evidence of v" in err
