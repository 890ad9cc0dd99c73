"""The owner's right to erasure (issue 14): `fleetlake erase` removes every trace of a
vehicle from the data directory, proven by a scan of every file; the vehicle stays erased;
an erasure cut short finishes when run again; the receipt holds no id."""

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
from conftest import definitions_on, mart
from deliveries import delivery, odometer, signal, write_landing
from privacy_scan import scan, vehicle_traces

from pipelines.build import build_everything, instance_for_cli
from pipelines.cli import main
from pipelines.erasure import CRASH_AFTER_ENV, erase_run_cleanup
from pipelines.sources.simulator import SimulationConfig, simulate_fleet
from storage import tables
from storage.connections import CONNECTIONS_SCHEMA, write_connections
from storage.erased_record import KEY_ENV, VEHICLE, ErasedRecord
from storage.erasure import belongs_to, rewrite_landing_file, search_terms
from storage.layout import SmartcarLayout
from storage.resources import LakeResource

REPO = Path(__file__).parents[1]
HOSTILE = "x'); DROP TABLE marts.vehicles; --\"\\/../../etc/passwd"
PER_VEHICLE_MARTS = ("vehicles", "daily_mileage", "mileage_verification", "odometer_anomalies", "charging_sessions",
                     "battery_health", "maintenance_forecast", "vehicle_errors", "vehicle_connections")


def _hostile_deliveries(landing: Path, target: str) -> None:
    """A vehicle with a hostile id (its own user), and a malformed line that mentions the target."""
    lines = [delivery(f"hostile-{i}", HOSTILE, [odometer(100.0 + i, f"2026-09-02T0{i}:00:00.000Z"),
                                                 signal("location-preciselocation",
                                                        {"latitude": 48.1234567, "longitude": 11.7654321},
                                                        f"2026-09-02T0{i}:00:00.000Z")],
                      delivered_at=f"2026-09-02T0{i}:00:05Z") for i in range(3)]
    for line in lines:
        line["data"]["user"]["id"] = "user-hostile'--"
    lines.append('{"eventId": "broken", "data": {"vehicle": {"id": "' + target + '"}, "signals": [')  # malformed
    write_landing(landing / "extra" / "hostile.ndjson.gz", lines)


def _connections(lake: LakeResource, vehicle_ids: list[str], users: dict[str, str]) -> None:
    rows = [{**dict.fromkeys(CONNECTIONS_SCHEMA.names()), "vehicle_id": v, "user_id": users[v], "status": "CONNECTED",
             "connection_id": f"conn-{i}"} for i, v in enumerate(vehicle_ids)]
    write_connections(SmartcarLayout(lake), pl.DataFrame(rows, schema=CONNECTIONS_SCHEMA))


@pytest.fixture(scope="session")
def fleet(tmp_path_factory) -> dict:
    """A small simulated fleet (4 vehicles × 3 days, with the simulator's faults), a
    hostile-id vehicle, connection records, a mileage statement, built with the commands'
    Dagster instance under the data dir. Tests copy it."""
    root = tmp_path_factory.mktemp("erasure_fleet") / "data"
    os.environ.pop("DAGSTER_HOME", None)
    simulate_fleet(SimulationConfig(vehicles=4, days=3), landing_dir=root / "landing", truth_dir=root / "ground_truth")
    lake = LakeResource(data_dir=str(root))
    target = pl.read_parquet(root / "ground_truth" / "vehicles.parquet").sort("vehicle_id").get_column("vehicle_id")[0]
    _hostile_deliveries(root / "landing", target)
    with instance_for_cli(str(root)) as instance:
        report = build_everything(definitions_on(root), instance)
        assert not report.errors, report.errors
        truth = pl.read_parquet(root / "ground_truth" / "vehicles.parquet")
        users = dict(truth.select("vehicle_id", "user_id").iter_rows()) | {HOSTILE: "user-hostile'--"}
        _connections(lake, [target, HOSTILE, truth.get_column("vehicle_id")[1]], users)
        report = build_everything(definitions_on(root), instance)  # the connections mart
        assert not report.errors, report.errors
    assert main(["--data-dir", str(root), "mileage", target, "--from", "2026-09-01", "--to", "2026-09-30"]) == 0
    texts, coordinates = vehicle_traces(root, target)
    return {"root": root, "target": target, "texts": texts, "coordinates": coordinates}


@pytest.fixture
def copy(fleet, tmp_path, monkeypatch) -> Path:
    data = tmp_path / "data"
    shutil.copytree(fleet["root"], data, symlinks=True)
    monkeypatch.setenv("FLEETLAKE_DATA_DIR", str(data))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return data


def _marts(data: Path) -> dict[str, pl.DataFrame]:
    return {t: mart(data, t) for t in (*PER_VEHICLE_MARTS, "charging_load_profile", "pipeline_health")}


def _without(frame: pl.DataFrame, vehicle: str) -> pl.DataFrame:
    drop = [c for c in frame.columns if c in ("built_at", "session_id")]
    return frame.filter(pl.col("vehicle_id") != vehicle).drop(drop).sort(pl.all())


def _health_reconciles(data: Path) -> dict:
    health = mart(data, "pipeline_health")
    assert (health["deliveries_landed"] == health["deliveries_parsed"] + health["duplicates"] + health["quarantined"]
            + health["erased"]).all()
    return health.select(pl.exclude("day").sum()).row(0, named=True)


def test_an_erased_vehicle_leaves_no_trace_and_stays_erased(fleet, copy, capsys):
    target, texts, coordinates = fleet["target"], fleet["texts"], fleet["coordinates"]
    assert len(texts) == 3 and coordinates  # id, user id, VIN; and where it drove
    before_hits = scan(copy, texts, coordinates)
    assert {h.split("/")[0].split(":")[0] for h in before_hits} >= {"landing", "lake", "warehouse.duckdb", "dagster",
                                                                      "statements"}
    before = _marts(copy)
    landed_before = _health_reconciles(copy)["deliveries_landed"]

    assert main(["--data-dir", str(copy), "erase", target]) == 0
    assert scan(copy, texts, coordinates) == []

    after = _marts(copy)
    for table in PER_VEHICLE_MARTS:  # the other vehicles' rows are unchanged
        assert _without(after[table], target).equals(_without(before[table], target)), table
        assert target not in after[table].get_column("vehicle_id").to_list()
    # A fleet aggregate is recomputed without it.
    sessions = before["charging_sessions"].filter(pl.col("vehicle_id") == target).height
    assert after["charging_load_profile"]["sessions"].sum() == before["charging_load_profile"]["sessions"].sum() - sessions
    totals = _health_reconciles(copy)
    assert totals["deliveries_landed"] == landed_before and totals["erased"] > 0
    results = mart(copy, "quality_results")
    accounting = results.filter(pl.col("check").is_in(["landed_lines_accounted", "lake_signals_accounted"]))
    assert accounting.height and accounting["passed"].all()

    # The receipt: when, which layers, how much, the keyed hash, never the id.
    receipts = sorted((copy / "privacy" / "receipts").glob("*.json"))
    receipt = json.loads(receipts[0].read_text())
    assert receipt["records_removed"] > 0 and receipt["files_rewritten"] > 0
    assert receipt["requested"] == [{"kind": "vehicle", "hash": ErasedRecord(copy).hashes(VEHICLE, [target])[target]}]
    assert {"raw", "landing", "readings", "connections", "warehouse", "history", "dagster"} <= set(receipt["layers"])
    capsys.readouterr()
    assert main(["--data-dir", str(copy), "erase", "--list"]) == 0
    assert receipt["requested"][0]["hash"][:16] in capsys.readouterr().out

    # Twice is harmless; a normal run brings nothing back.
    assert main(["--data-dir", str(copy), "erase", target]) == 0
    assert main(["--data-dir", str(copy), "run"]) == 0
    assert scan(copy, texts, coordinates) == []
    assert _health_reconciles(copy)["deliveries_landed"] == landed_before

    # A replay of the old landing files: its lines of the vehicle are dropped and counted.
    shutil.copytree(fleet["root"] / "landing", copy / "landing" / "replay")
    replayed = [line for f in (fleet["root"] / "landing").rglob("*.ndjson*")
                for line in (gzip.decompress(f.read_bytes()) if f.name.endswith(".gz") else f.read_bytes()).splitlines()]
    theirs = sum(1 for line in replayed if belongs_to({target}, set(), search_terms(texts))(line))
    erased_before = _health_reconciles(copy)["erased"]
    assert main(["--data-dir", str(copy), "run"]) == 0
    totals = _health_reconciles(copy)
    assert totals["erased"] == erased_before + theirs
    assert totals["deliveries_landed"] == landed_before + len(replayed)
    assert scan(copy, texts, coordinates) == []  # the replayed files lost its lines too


def test_an_erasure_killed_midway_finishes_when_run_again(fleet, copy):
    target = fleet["target"]
    env = {**os.environ, "FLEETLAKE_DATA_DIR": str(copy), CRASH_AFTER_ENV: "raw"}
    command = [sys.executable, "-m", "pipelines.cli", "erase", target]
    crashed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert crashed.returncode == 97, crashed.stderr
    # The intent came first: ingest already drops the vehicle, and nothing says it is done.
    entries = ErasedRecord(copy).entries()
    assert [e["completed_at"] for e in entries.values()] == [None]
    assert not (copy / "privacy" / "receipts").exists()
    del env[CRASH_AFTER_ENV]
    finished = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert scan(copy, fleet["texts"], fleet["coordinates"]) == []
    assert all(e["completed_at"] for e in ErasedRecord(copy).entries().values())
    _health_reconciles(copy)
    assert not list((copy / "privacy" / "pending").glob("*.json"))


def test_the_erase_job_erases_a_hostile_id_from_the_ui(fleet, copy):
    definitions = definitions_on(copy)
    with instance_for_cli(str(copy)) as instance:
        result = definitions.resolve_job_def("erase_job").execute_in_process(
            instance=instance, run_config={"ops": {"erase_vehicles": {"config": {"vehicle_ids": [HOSTILE]}}}})
        assert result.success
        texts, coordinates = [HOSTILE, "user-hostile'--", "48.1234567"], {48.1234567, 11.7654321}
        # The UI's run keeps its own run config (the id): the only trace left, in the instance,
        # until the run-status sensor deletes the finished run.
        left = scan(copy, texts, coordinates)
        assert left and all(hit.startswith("dagster/") for hit in left), left
        erase_run_cleanup(dg.build_run_status_sensor_context(
            sensor_name="erase_run_cleanup", dagster_instance=instance, dagster_run=result.dagster_run,
            dagster_event=result.get_run_success_event()))
        assert instance.get_run_by_id(result.run_id) is None
    assert scan(copy, texts, coordinates) == []
    assert main(["--data-dir", str(copy), "erase", HOSTILE]) == 0  # again: harmless
    assert scan(copy, texts, coordinates) == []
    with duckdb.connect(str(copy / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM marts.vehicles").fetchone()[0] == 4  # the table is still there
    assert (copy / "landing" / "extra" / "hostile.ndjson.gz").exists()
    gzip.decompress((copy / "landing" / "extra" / "hostile.ndjson.gz").read_bytes())  # gzip stays gzip


def test_an_id_found_nowhere_is_a_mistake_and_nothing_is_recorded(data_dir, capsys):
    assert main(["--data-dir", str(data_dir), "erase", "no-such-vehicle"]) == 2
    assert "found nowhere" in capsys.readouterr().err
    assert not ErasedRecord(data_dir).path.exists()
    assert main(["--data-dir", str(data_dir), "erase"]) == 2


def test_the_record_holds_keyed_hashes_only_and_the_key_is_owner_only(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    record = ErasedRecord(tmp_path)
    record.record_intent(VEHICLE, [HOSTILE])
    text = record.path.read_text()
    assert HOSTILE not in text and "DROP" not in text
    key_file = tmp_path / "privacy" / "erasure.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert record.erased_among(VEHICLE, [HOSTILE, "other"]) == {HOSTILE}
    monkeypatch.setenv(KEY_ENV, "another key")  # another key: another hash, the id is not recognised
    assert record.erased_among(VEHICLE, [HOSTILE]) == set()


def test_landing_lines_are_removed_with_hostile_ids_gzip_kept(tmp_path):
    lines = [delivery("e1", HOSTILE), delivery("e2", "other"), delivery("e3", HOSTILE + "-not-the-same"),
             '{"broken": "' + HOSTILE.replace("\\", "\\\\").replace('"', '\\"') + '", ', "plain text"]
    path = write_landing(tmp_path / "f.ndjson.gz", lines)
    terms = search_terms([HOSTILE])
    rewritten = rewrite_landing_file(path, belongs_to({HOSTILE}, set(), terms), terms)
    assert rewritten.lines_removed == 2  # its delivery and the malformed line that mentions it
    kept = [json.loads(x)["eventId"] if x.startswith("{") else x for x in gzip.decompress(path.read_bytes()).decode().splitlines()]
    assert kept == ["e2", "e3", "plain text"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staged file left behind


def test_delete_predicates_quote_hostile_ids(tmp_path):
    path = tmp_path / "t"
    tables.append(path, pl.DataFrame({"vehicle_id": [HOSTILE, "a", "b'"], "n": [1, 2, 3]}))
    done = tables.delete_rows(path, f"vehicle_id IN ({tables.sql_text(HOSTILE)}, {tables.sql_text(chr(39))})")
    assert done["rows"] == 1
    assert sorted(pl.read_delta(str(path))["vehicle_id"].to_list()) == ["a", "b'"]
    tables.forget_history(path)
    log = b"".join(p.read_bytes() for p in (path / "_delta_log").iterdir() if p.is_file())
    assert b"DROP" not in log and len(list(path.glob("*.parquet"))) == 1


def test_the_pull_neither_pulls_nor_records_an_erased_vehicle(data_dir, monkeypatch):
    from smartcar_double import SmartcarDouble
    from test_smartcar_pull import connections, landed, pull

    with SmartcarDouble(vehicles=3) as double:
        for name, value in double.env().items():
            monkeypatch.setenv(name, value)
        ErasedRecord(data_dir).record_intent(VEHICLE, ["veh-0001"])
        report = pull(data_dir, min_interval=0)
    assert "veh-0001" not in report.pulled and "veh-0001" not in connections(data_dir)
    assert {d["data"]["vehicle"]["id"] for d in landed(data_dir)} == {"veh-0000", "veh-0002"}


def test_erase_disconnect_asks_smartcar_to_remove_the_connection(data_dir, monkeypatch, capsys):
    from smartcar_double import SmartcarDouble
    from test_smartcar_pull import pull

    with SmartcarDouble(vehicles=3) as double:
        for name, value in double.env().items():
            monkeypatch.setenv(name, value)
        pull(data_dir, min_interval=0)  # the connection records name veh-0001: found, so erasable
        assert main(["--data-dir", str(data_dir), "erase", "veh-0001", "--disconnect"]) == 0
        deletes = double.calls("/v2.0/management/connections")
        assert [(c["method"], c["query"]) for c in deletes] == [("DELETE", "vehicle_id=veh-0001")]
        assert "veh-0001" not in double.vehicles
        assert "removed 1 connection" in capsys.readouterr().out
        monkeypatch.setenv("SMARTCAR_MANAGEMENT_TOKEN", "wrong")
        assert main(["--data-dir", str(data_dir), "erase", "veh-0002", "--disconnect"]) == 1
        assert "did not remove the connection" in capsys.readouterr().err


def test_the_disconnection_sensor_stops_only_or_erases_after_the_grace_period(data_dir, monkeypatch):
    from datetime import UTC, datetime, timedelta

    import dagster as dg

    from pipelines.disconnections import disconnection_sensor
    from pipelines.erasure import disconnected_vehicles

    lake = LakeResource(data_dir=str(data_dir))
    now = datetime.now(UTC)
    rows = [{**dict.fromkeys(CONNECTIONS_SCHEMA.names()), "vehicle_id": v, "user_id": "u", "status": status,
             "disconnected_at": at} for v, status, at in [("gone-long", "DISCONNECTED", now - timedelta(hours=30)),
                                                           ("gone-now", "DISCONNECTED", now), ("here", "CONNECTED", None)]]
    write_connections(SmartcarLayout(lake), pl.DataFrame(rows, schema=CONNECTIONS_SCHEMA))
    assert disconnected_vehicles(lake, 0) == ["gone-long", "gone-now"]
    assert disconnected_vehicles(lake, 24) == ["gone-long"]

    def evaluate():
        with dg.build_sensor_context(resources={"lake": lake}) as context:
            return disconnection_sensor(context)

    monkeypatch.delenv("FLEETLAKE_ON_DISCONNECT", raising=False)
    assert isinstance(evaluate(), dg.SkipReason)  # the default: stop collecting only
    monkeypatch.setenv("FLEETLAKE_ON_DISCONNECT", "erase")
    monkeypatch.setenv("FLEETLAKE_DISCONNECT_GRACE_HOURS", "24")
    request = evaluate()
    assert request.run_config == {"ops": {"erase_vehicles": {"config": {"disconnected_for_hours": 24.0}}}}
    assert "gone-long" not in repr(request)  # no vehicle id in the clear in the instance
    monkeypatch.setenv("FLEETLAKE_DISCONNECT_GRACE_HOURS", "48")
    assert isinstance(evaluate(), dg.SkipReason)
