"""The Definitions object, its sensors, and the `fleetlake` command."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
from conftest import build, definitions_on, open_to_others
from deliveries import delivery, odometer, write_landing

from pipelines.definitions import defs

REPO = Path(__file__).parents[1]


def test_one_definitions_object_holds_every_asset_check_job_schedule_and_sensor():
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert {"raw_deliveries", "readings", "marts/vehicles", "marts/daily_mileage", "marts/vehicle_errors",
            "marts/pipeline_health", "marts/quality_results"} <= keys
    checks = {c.to_user_string() for c in defs.resolve_asset_graph().asset_check_keys}
    assert {"raw_deliveries:landed_lines_accounted", "readings:readings_schema", "readings:readings_in_range",
            "readings:signals_accounted"} <= checks
    assert {"ingest_job", "readings_job", "marts_job"} <= {j.name for j in defs.resolve_all_job_defs()}
    assert defs.resolve_schedule_def("smartcar_pull_every_30_minutes")
    assert defs.resolve_sensor_def("landing_sensor") and defs.resolve_sensor_def("stale_readings_sensor")


def test_critical_checks_block_what_depends_on_them():
    specs = {s.key.to_user_string(): s for a in defs.resolve_asset_graph().assets_defs for s in a.check_specs}
    for name in ("raw_deliveries:landed_lines_accounted", "readings:readings_schema", "readings:readings_in_range",
                 "readings:signals_accounted"):
        assert specs[name].blocking, name
    assert not specs["raw_deliveries:landing_freshness"].blocking


def test_marts_are_requested_once_what_they_read_was_updated():
    """The marts' declared automation: nothing on the first evaluation, every mart that reads
    readings (and the quality results) once one reading day is materialized, even though the
    other days were never built, and nothing again until the next update."""
    instance = dg.DagsterInstance.ephemeral()
    marts = dg.AssetSelection.groups("marts")

    def requested(cursor):
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=marts, cursor=cursor)
        return {r.key.to_user_string() for r in result.results if r.true_subset.size}, result.cursor

    first, cursor = requested(None)
    assert first == set()
    instance.report_runless_asset_event(dg.AssetMaterialization(dg.AssetKey("readings"), partition="2026-09-01"))
    after_readings, cursor = requested(cursor)
    assert {"marts/daily_mileage", "marts/mileage_verification", "marts/charging_sessions",
            "marts/maintenance_forecast", "marts/pipeline_health", "marts/quality_results"} <= after_readings
    assert "marts/vehicle_errors" not in after_readings  # reads raw deliveries, not readings
    assert requested(cursor)[0] == set()


def test_sensors_request_runs_for_new_files_and_stale_days(data_dir):
    definitions = definitions_on(data_dir)
    landing_sensor = definitions.resolve_sensor_def("landing_sensor")
    stale_sensor = definitions.resolve_sensor_def("stale_readings_sensor")
    resources = {"lake": definitions.resources["lake"]}
    with dg.build_sensor_context(resources=resources) as context:
        assert isinstance(landing_sensor(context), dg.SkipReason)
    write_landing(data_dir / "landing/a.ndjson", [
        delivery("e1", signals=[odometer(10, "2026-09-01T08:00:00Z")], delivered_at=1788249600000)])
    with dg.build_sensor_context(resources=resources) as context:
        assert isinstance(landing_sensor(context), dg.RunRequest)
    build(data_dir)
    with dg.build_sensor_context(resources=resources) as context:
        assert isinstance(landing_sensor(context), dg.SkipReason)
        assert isinstance(stale_sensor(context), dg.SkipReason)


def test_fleetlake_demo_then_run_from_the_command_line(tmp_path):
    env = {**os.environ, "FLEETLAKE_DATA_DIR": str(tmp_path)}
    demo = subprocess.run([sys.executable, "-m", "pipelines.cli", "demo", "--vehicles", "3", "--days", "2"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert "marts.daily_mileage" in demo.stdout
    assert open_to_others(tmp_path) == []  # the simulator's landing files included
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        assert con.sql("SELECT count(*) FROM marts.vehicles").fetchall()[0][0] == 3
    again = subprocess.run([sys.executable, "-m", "pipelines.cli", "run"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "0 new files" in again.stdout


def test_dagster_dev_finds_the_definitions_through_pyproject():
    import importlib
    import tomllib

    settings = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dagster"]
    module = importlib.import_module(settings["module_name"])
    assert isinstance(module.defs, dg.Definitions)
