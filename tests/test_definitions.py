"""The Definitions object, its sensors, and the `fleetlake` command."""

import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest
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
    # Entered and left here: the evaluation makes the instance Dagster's current one, which
    # must not outlive the test (later definitions would resolve a dead instance).
    with dg.instance_for_test() as instance:
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


def on_a_terminal(argv: list[str], env: dict, timeout: float = 600) -> tuple[int, str]:
    """Run a command with its stdout and stderr on a pseudo-terminal, as a user at a terminal
    sees it: its exit status and everything it wrote."""
    import pty
    import threading

    primary, secondary = pty.openpty()
    process = subprocess.Popen(argv, cwd=REPO, env={**env, "COLUMNS": "120"}, stdin=subprocess.DEVNULL,
                               stdout=secondary, stderr=secondary)
    os.close(secondary)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the command ended and closed the terminal
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    status = process.wait(timeout=timeout)
    reader.join(timeout=10)
    os.close(primary)
    return status, b"".join(chunks).decode("utf-8", "replace")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, str]:
    """`fleetlake demo` on a small fleet, run on a terminal once for the tests below: the data
    dir and what the terminal showed."""
    data_dir = tmp_path_factory.mktemp("demo") / "data"
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    status, shown = on_a_terminal([sys.executable, "-m", "pipelines.cli", "demo", "--data-dir", str(data_dir),
                                   "--vehicles", "3", "--days", "2"], env)
    assert status == 0, shown[-3000:]
    return data_dir, shown


def test_fleetlake_demo_shows_progress_on_a_terminal_then_the_summary_and_what_to_do_next(demo):
    data_dir, shown = demo
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        assert con.sql("SELECT count(*) FROM marts.vehicles").fetchall()[0][0] == 3
        readings = con.sql("SELECT sum(readings) FROM marts.pipeline_health").fetchall()[0][0]
    assert open_to_others(data_dir) == []  # the simulator's landing files and the Dagster instance included
    assert "\x1b[" in shown  # rich drew on the terminal
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)
    assert re.search(r"ingest .* 8/8 .* 8 files, 175 lines → 171 parsed", plain), plain[-3000:]
    assert re.search(rf"readings .* 2/2 .* {readings:,} readings", plain), (readings, plain[-3000:])
    assert re.search(r"marts .* (\d+)/\1 ", plain)
    assert re.search(r"checks .* (\d+)/\1 .* \d+ passed, 1 warning", plain)
    assert "✓ marts.daily_mileage: 6 rows" in plain
    assert "warning raw_deliveries:landing_freshness" in plain
    summary = plain[plain.index("ingest: 8 new files"):]  # then the same summary as without a terminal
    assert "  marts.daily_mileage: 6 rows" in summary
    assert re.search(r"time: [\d.]+ s \(ingest [\d.]+ s, readings [\d.]+ s, marts [\d.]+ s\)", summary)
    next_steps = summary[summary.index("next:"):]
    for step in ("query:", "notebooks:", "jupyter lab notebooks/", "Dagster UI:", "dg dev", "maintenance:",
                 f"fleetlake --data-dir {data_dir} maintenance", "mileage:", "--from 2026-09-01 --to 2026-09-30"):
        assert step in next_steps, step


ASSETS_QUERY = """{ assetNodes {
    assetKey { path }
    partitionStats { numMaterialized numPartitions }
    assetMaterializations(limit: 1) { runId }
    assetChecksOrError { ... on AssetChecks { checks {
        name description executionForLatestMaterialization { status evaluation { description } } } } }
} }"""


def test_the_dagster_ui_shows_what_the_demo_built(demo):
    """The webserver on the demo's instance (<data dir>/dagster, as `fleetlake` left it): every
    mart materialized, every check evaluated with its description, the readings' partitions
    the data's days and all of them materialized."""
    import socket
    import time
    import urllib.request
    import json

    data_dir, _ = demo
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**{k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}, "FLEETLAKE_DATA_DIR": str(data_dir),
           "DAGSTER_HOME": str(data_dir / "dagster")}
    server = subprocess.Popen([str(Path(sys.executable).with_name("dagster-webserver")), "-m", "pipelines.definitions",
                               "-h", "127.0.0.1", "-p", str(port)], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read().decode()[-2000:]
                time.sleep(1)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", method="POST",
                                         data=json.dumps({"query": ASSETS_QUERY}).encode(),
                                         headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(request, timeout=120).read())
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "errors" not in answer, answer.get("errors")
    nodes = {"/".join(n["assetKey"]["path"]): n for n in answer["data"]["assetNodes"]}
    marts = [key for key in nodes if key.startswith("marts/")]
    assert len(marts) >= 12
    assert [key for key in marts if not nodes[key]["assetMaterializations"]] == []  # every mart materialized
    assert nodes["raw_deliveries"]["assetMaterializations"]
    # the demo's two days (2026-09-01 and 02), not every day since 2020, and both materialized
    stats = nodes["readings"]["partitionStats"]
    assert stats["numMaterialized"] == 2 and stats["numPartitions"] < 200, stats
    checks = {(key, c["name"]): c for key, n in nodes.items() for c in n["assetChecksOrError"].get("checks", [])}
    assert len(checks) >= 12
    not_evaluated = [name for name, c in checks.items() if not c["executionForLatestMaterialization"]]
    assert not_evaluated == []
    assert [name for name, c in checks.items() if not c["description"]] == []
    freshness = checks["raw_deliveries", "landing_freshness"]["executionForLatestMaterialization"]
    assert freshness["status"] == "FAILED" and "days old" in freshness["evaluation"]["description"]


def test_data_older_than_the_first_partition_is_built_by_the_same_quiet_run(demo):
    """The reading partitions start at the lake's first day (recorded under its state). A run
    that lands an earlier day goes on in a fresh process whose partitions include it, and
    rebuilds only that day. Without a terminal it shows no progress, only the summary. (Last
    in this module: it adds a day to the demo's data.)"""
    from storage.partitions import recorded_first_day

    data_dir, _ = demo
    assert recorded_first_day(data_dir).isoformat() == "2026-09-01"
    write_landing(data_dir / "landing" / "late.ndjson", [
        delivery("late-1", signals=[odometer(10, "2026-08-20T08:00:00Z")], delivered_at=1788249600000)])
    env = {**{k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}, "FLEETLAKE_DATA_DIR": str(data_dir)}
    late = subprocess.run([sys.executable, "-m", "pipelines.cli", "run"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    assert late.returncode == 0, late.stdout[-2000:] + late.stderr[-2000:]
    assert "readings arrived for days from 2026-08-20, before the first partition; building them" in late.stdout
    assert "readings: 1 days rebuilt" in late.stdout  # only the new day
    assert "\x1b" not in late.stdout and "✓" not in late.stdout and late.stderr == ""  # no progress in a pipe
    summary = late.stdout.splitlines()[1:]  # after the line about the fresh process, the summary
    assert summary[0].startswith("ingest: 0 new files")  # the first process ingested it, once
    assert any(line.startswith("time: ") for line in summary) and "next:" in summary
    assert recorded_first_day(data_dir).isoformat() == "2026-08-20"
    assert (data_dir / "lake" / "readings" / "day=2026-08-20").is_dir()
