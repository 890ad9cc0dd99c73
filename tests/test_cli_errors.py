"""A user's mistake is one error (storage/errors.py UserError): every command prints what
was wrong on stderr and exits 2, without a traceback; argparse's own errors exit 2 too."""

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pipelines.cli import main as fleetlake
from pipelines.reports.statements import StatementError
from storage.errors import UserError

REPO = Path(__file__).parents[1]


@pytest.fixture(autouse=True)
def restore_data_dir_setting(monkeypatch):
    monkeypatch.delenv("FLEETLAKE_DATA_DIR", raising=False)  # the command sets it; restored afterwards


def user_mistake(argv: list[str], capsys) -> str:
    """Run the command; it must exit 2 (returned, or by argparse's SystemExit). Its stderr."""
    try:
        status = fleetlake(argv)
    except SystemExit as exited:
        status = exited.code
    out, err = capsys.readouterr()
    assert status == 2, (out, err)
    assert "Traceback" not in err
    return err


@pytest.fixture
def warehouse(tmp_path) -> Path:
    """A data dir whose warehouse has marts but no vehicles and no forecast."""
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        con.execute("CREATE SCHEMA marts")
        con.execute("CREATE TABLE marts.vehicles (vehicle_id VARCHAR)")
    return tmp_path


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--vehicles", "-3", "argument --vehicles: must be at least 1: '-3'"),
    ("--vehicles", "0", "argument --vehicles: must be at least 1: '0'"),
    ("--vehicles", "many", "argument --vehicles: not a whole number: 'many'"),
    ("--days", "0", "argument --days: must be at least 1: '0'"),
    ("--interval", "0", "argument --interval: must be from 1 to 720: '0'"),
    ("--interval", "1000", "argument --interval: must be from 1 to 720: '1000'"),
    ("--seed", "-1", "argument --seed: must be at least 0: '-1'"),
    ("--start", "2026-13-01", "argument --start: not a date (YYYY-MM-DD): '2026-13-01'"),
    ("--start", "yesterday", "argument --start: not a date (YYYY-MM-DD): 'yesterday'"),
])
@pytest.mark.parametrize("command", ["simulate", "demo"])
def test_bad_simulation_options_are_refused_before_anything_is_written(tmp_path, capsys, command, option, value,
                                                                       message):
    err = user_mistake(["--data-dir", str(tmp_path), command, option, value], capsys)
    assert f"fleetlake {command}: error: {message}" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["simulate", "demo"])
def test_a_data_dir_that_is_a_file_is_refused(tmp_path, capsys, command):
    not_a_dir = tmp_path / "data"
    not_a_dir.write_text("")
    err = user_mistake(["--data-dir", str(not_a_dir), command, "--vehicles", "1", "--days", "1"], capsys)
    assert f"fleetlake {command}: error: the data directory {not_a_dir} is not a directory" in err


def test_run_needs_an_existing_data_dir(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    err = user_mistake(["--data-dir", str(missing), "run"], capsys)
    assert f"fleetlake run: error: no data directory at {missing}" in err
    assert not missing.exists()
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert "is not a directory" in user_mistake(["--data-dir", str(a_file), "run"], capsys)


@pytest.mark.parametrize(("value", "message"), [
    ("-1", "argument --due-within: must be a number of days, 0 or more: '-1'"),
    ("soon", "argument --due-within: not a number of days: 'soon'"),
    ("nan", "argument --due-within: must be a number of days, 0 or more: 'nan'"),
    ("inf", "argument --due-within: must be a number of days, 0 or more: 'inf'"),
])
def test_maintenance_refuses_a_bad_window(warehouse, capsys, value, message):
    err = user_mistake(["--data-dir", str(warehouse), "maintenance", "--due-within", value], capsys)
    assert f"fleetlake maintenance: error: {message}" in err


def test_maintenance_needs_a_warehouse_and_a_forecast(tmp_path, warehouse, capsys):
    err = user_mistake(["--data-dir", str(tmp_path / "nowhere"), "maintenance"], capsys)
    assert f"fleetlake maintenance: error: no warehouse at {tmp_path / 'nowhere' / 'warehouse.duckdb'}" in err
    err = user_mistake(["--data-dir", str(warehouse), "maintenance", "--due-within", "0"], capsys)
    assert "fleetlake maintenance: error: no marts.maintenance_forecast in" in err
    assert "run `fleetlake run` first" in err


@pytest.mark.parametrize(("args", "message"), [
    (["ghost", "--from", "2026-09-01", "--to", "2026-09-30"], "unknown vehicle: ghost"),
    (["--from", "2026-09-01", "--to", "2026-09-30"], "no vehicle given"),
    (["ghost", "--all", "--from", "2026-09-01", "--to", "2026-09-30"], "give vehicle ids or --all, not both"),
    (["ghost", "--from", "2026-09-30", "--to", "2026-09-01"], "the period starts after it ends"),
    (["ghost", "--from", "2026-09-01", "--to", "30/09/2026"], "argument --to: not a date (YYYY-MM-DD): '30/09/2026'"),
    (["ghost", "--to", "2026-09-30"], "the following arguments are required: --from"),
])
def test_mileage_explains_each_mistake(warehouse, capsys, args, message):
    err = user_mistake(["--data-dir", str(warehouse), "mileage", *args], capsys)
    assert f"fleetlake mileage: error: {message}" in err


def test_mileage_needs_a_warehouse_with_marts(tmp_path, capsys):
    err = user_mistake(["--data-dir", str(tmp_path), "mileage", "v", "--from", "2026-09-01", "--to", "2026-09-30"],
                       capsys)
    assert "fleetlake mileage: error: no warehouse at" in err
    duckdb.connect(str(tmp_path / "warehouse.duckdb")).close()  # a warehouse, but no marts in it
    err = user_mistake(["--data-dir", str(tmp_path), "mileage", "v", "--from", "2026-09-01", "--to", "2026-09-30"],
                       capsys)
    assert "fleetlake mileage: error: the warehouse has no marts yet: run `fleetlake run` first" in err


@pytest.mark.parametrize("content", [None, "{not json", json.dumps({"vehicles": [{"vehicle_id": "v"}]}), "[]"])
def test_check_statement_refuses_what_is_not_a_statement(tmp_path, capsys, content):
    path = tmp_path / "statement.json"
    if content is not None:
        path.write_text(content)
    err = user_mistake(["check-statement", str(path)], capsys)
    assert f"fleetlake check-statement: error: not a readable mileage statement: {path}" in err


def test_an_unknown_command_or_option_exits_2(capsys):
    assert "invalid choice: 'erase-everything'" in user_mistake(["erase-everything"], capsys)
    assert "unrecognized arguments: --fast" in user_mistake(["run", "--fast"], capsys)


@pytest.mark.parametrize(("args", "message"), [
    (["--min-interval", "-1"], "--min-interval must be 0 or more minutes"),
    (["--max-in-flight", "0"], "--max-in-flight must be 1 or more"),
])
def test_pull_refuses_bad_limits_before_calling_smartcar(tmp_path, capsys, args, message):
    assert message in user_mistake(["pull", "--data-dir", str(tmp_path), *args], capsys)


def test_statement_errors_are_user_errors():
    assert issubclass(StatementError, UserError)


@pytest.mark.parametrize("argv", [
    ["run"],
    ["maintenance", "--due-within", "-2"],
    ["mileage", "v", "--from", "2026-09-01", "--to", "2026-09-30"],
    ["simulate", "--days", "0"],
])
def test_a_user_mistake_in_a_real_process_exits_2_without_a_traceback(tmp_path, argv):
    env = {**os.environ, "FLEETLAKE_DATA_DIR": str(tmp_path / "nowhere")}
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", *argv], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert f"fleetlake {argv[0]}: error: " in done.stderr
    assert "Traceback" not in done.stderr


def test_a_user_mistake_found_inside_the_build_exits_2(data_dir, capsys, monkeypatch):
    import assets.raw
    from deliveries import delivery, write_landing

    def refuse(*args, **kwargs):
        raise UserError("landing/a.ndjson is not yours to read")

    monkeypatch.setattr(assets.raw, "write_group", refuse)  # any layer may raise it
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    write_landing(data_dir / "landing/a.ndjson", [delivery("a")])
    err = user_mistake(["--data-dir", str(data_dir), "run"], capsys)
    assert "fleetlake run: error: landing/a.ndjson is not yours to read" in err
