"""The Smartcar pull, against a local HTTP double of Smartcar's API v3 (tests/smartcar_double.py)."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from conftest import build, definitions_on, mart
from smartcar_double import CLIENT_SECRET, MANAGEMENT_TOKEN, SmartcarDouble

from pipelines.sources.smartcar.client import CredentialsRejected, RetryPolicy
from pipelines.sources.smartcar.limits import Limits, RequestBucket, VehicleDue, plan_round
from pipelines.sources.smartcar.pull import pull_round
from pipelines.sources.smartcar.resource import SmartcarResource
from storage.connections import read_connections
from storage.layout import SmartcarLayout
from storage.layout import landing_files as _all_landing_files
from storage.resources import LakeResource

REPO = Path(__file__).parents[1]


def landing_files(landing: Path) -> list[Path]:
    """Published landing files: not in a dot-folder such as `.in-progress/` (the contract)."""
    return [f for f in _all_landing_files(landing) if not any(p.startswith(".") for p in f.relative_to(landing).parts)]
FAST_RETRY = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05, max_retry_after_s=2)


@pytest.fixture
def smartcar(monkeypatch):
    with SmartcarDouble(vehicles=5, page_size=2, signal_page_size=3) as double:
        for name, value in double.env().items():
            monkeypatch.setenv(name, value)
        yield double


def resource() -> SmartcarResource:
    return SmartcarResource.from_environment().process_config_and_initialize()


def pull(data_dir: Path, client=None, min_interval: float = 30, **limits):
    lake = LakeResource(data_dir=str(data_dir))
    smartcar = resource()
    client = client or smartcar.client(retry=FAST_RETRY)
    return pull_round(client, lake.landing, SmartcarLayout(lake),
                      Limits(min_interval=timedelta(minutes=min_interval), **limits), smartcar.bucket())


def landed(data_dir: Path) -> list[dict]:
    return [json.loads(line) for f in landing_files(data_dir / "landing") for line in f.read_text().splitlines()]


def connections(data_dir: Path) -> dict[str, dict]:
    frame = read_connections(SmartcarLayout(LakeResource(data_dir=str(data_dir))))
    return {r["vehicle_id"]: r for r in frame.to_dicts()}


def test_a_round_lands_every_connected_vehicle_in_the_webhook_shape(data_dir, smartcar):
    report = pull(data_dir)
    assert sorted(report.pulled) == sorted(smartcar.vehicles) and not report.errors
    assert len(smartcar.calls("/v3/connections")) == 3  # 5 connections, 2 a page, by links.next
    signal_calls = smartcar.calls("/v3/vehicles/")
    assert len(signal_calls) == 10  # 4 signals, 3 a page: 2 pages each
    assert all(c["headers"]["sc-user-id"] == smartcar.vehicles[c["path"].split("/")[3]].user_id for c in signal_calls)
    assert smartcar.token_grants == 1 and smartcar.bucket_refusals == 0
    files = landing_files(data_dir / "landing")
    assert files and all(f.relative_to(data_dir / "landing").parts[0] == "smartcar-pull" for f in files)
    assert not list((data_dir / "landing" / ".in-progress").glob("*.ndjson"))  # only complete files are visible
    deliveries = landed(data_dir)
    assert len(deliveries) == 5
    one = next(d for d in deliveries if d["data"]["vehicle"]["id"] == "veh-0000")
    assert one["eventType"] == "VEHICLE_STATE" and one["meta"]["mode"] == "PULL" and one["meta"]["version"] == "4.0"
    assert one["data"]["user"]["id"] == smartcar.vehicles["veh-0000"].user_id
    assert one["data"]["vehicle"]["make"] == "TESLA"
    odometer = next(s for s in one["data"]["signals"] if s["code"] == "odometer-traveleddistance")
    assert odometer["body"] == {"value": 12000.0, "unit": "km"}
    assert odometer["meta"] == {"retrievedAt": 1788249601500, "oemUpdatedAt": 1788249600000}


def test_pulling_the_same_state_twice_counts_once_and_a_build_reaches_the_marts(data_dir, smartcar):
    first = pull(data_dir)
    again = pull(data_dir, min_interval=0)  # nothing changed at Smartcar
    assert len(again.pulled) == 5
    smartcar.vehicles["veh-0002"].drive(42.0, minutes=24 * 60)
    pull(data_dir, min_interval=0)
    ids = [d["eventId"] for d in landed(data_dir)]
    assert len(ids) == 15 and len(set(ids)) == 6  # 5 states, then veh-0002's new one
    assert first.files
    report = build(data_dir)
    assert report.ok, report.failed_checks
    health = report.metadata["raw_deliveries"]
    assert health["new_parsed"] == 6 and health["new_duplicates"] == 9
    vehicles = mart(data_dir, "vehicles", "vehicle_id")
    assert vehicles["vehicle_id"].to_list() == sorted(smartcar.vehicles)
    mileage = mart(data_dir, "daily_mileage", "vehicle_id, day").filter(pl.col("vehicle_id") == "veh-0002")
    assert mileage["odometer_end_km"].max() == pytest.approx(12042.0)
    status = mart(data_dir, "vehicle_connections", "vehicle_id")
    assert set(status["status"]) == {"CONNECTED"} and status.height == 5


def test_errors_become_vehicle_error_deliveries_and_the_round_goes_on(data_dir, monkeypatch):
    with SmartcarDouble(vehicles=10) as smartcar:
        for name, value in smartcar.env().items():
            monkeypatch.setenv(name, value)
        smartcar.vehicles["veh-0000"].state = "revoked"
        smartcar.vehicles["veh-0001"].state = "asleep"
        smartcar.vehicles["veh-0002"].state = "unreachable"
        smartcar.vehicles["veh-0003"].state = "rescinded"
        smartcar.script("veh-0004", "billing")
        smartcar.script("veh-0005", "server", "server", "server")  # more than the retries
        smartcar.script("veh-0006", "upstream", "drop")  # then fine: backoff with jitter
        smartcar.script("veh-0007", "rate:1")  # short retry-after: waited, then fine
        smartcar.script("veh-0008", "rate:3600")  # long retry-after: not pulled before then
        report = pull(data_dir)
        assert sorted(report.errors) == ["veh-0000", "veh-0001", "veh-0002", "veh-0003", "veh-0004", "veh-0005"]
        assert report.blocked == ["veh-0008"]
        errors = {d["data"]["vehicle"]["id"]: d["data"]["errors"][0] for d in landed(data_dir)
                  if d["eventType"] == "VEHICLE_ERROR"}
        assert errors["veh-0000"]["type"] == "PERMISSION" and errors["veh-0000"]["resolution"] == {
            "type": "REAUTHENTICATE"}
        assert (errors["veh-0001"]["type"], errors["veh-0001"]["code"]) == ("VEHICLE_STATE", "ASLEEP")
        assert errors["veh-0002"]["code"] == "UNREACHABLE"
        assert (errors["veh-0003"]["type"], errors["veh-0003"]["code"]) == ("CONNECTED_SERVICES_ACCOUNT", "PERMISSION")
        assert (errors["veh-0004"]["type"], errors["veh-0004"]["code"]) == ("BILLING", "VEHICLE_REQUEST_LIMIT")
        assert errors["veh-0005"]["type"] == "SERVER" and errors["veh-0005"]["resolution"] == {"type": "RETRY_LATER"}
        states = {d["data"]["vehicle"]["id"] for d in landed(data_dir) if d["eventType"] == "VEHICLE_STATE"}
        assert states == {"veh-0006", "veh-0007", "veh-0009"}
        records = connections(data_dir)
        assert records["veh-0000"]["status"] == records["veh-0003"]["status"] == "DISCONNECTED"
        assert records["veh-0001"]["status"] == "CONNECTED"
        assert records["veh-0004"]["blocked_until"] > datetime.now(UTC) + timedelta(hours=1)  # next month

        before = len(smartcar.requests)
        again = pull(data_dir, min_interval=0)
        pulled_now = {r["path"].split("/")[3] for r in smartcar.requests[before:] if r["path"].startswith("/v3/veh")}
        assert not pulled_now & {"veh-0000", "veh-0003", "veh-0004", "veh-0008"}  # revoked, billing, told to wait
        assert "veh-0001" in again.pulled
        assert build(data_dir).ok
        vehicle_errors = mart(data_dir, "vehicle_errors")
        assert {"ASLEEP", "VEHICLE_REQUEST_LIMIT"} <= set(vehicle_errors["code"].drop_nulls())


def test_an_expired_token_is_renewed_once_and_bad_credentials_stop_the_round(data_dir, smartcar, monkeypatch):
    client = resource().client(retry=FAST_RETRY)
    pull(data_dir, client)
    smartcar.expire_tokens()  # the client still holds its token
    report = pull(data_dir, client, min_interval=0)
    assert len(report.pulled) == 5 and smartcar.token_grants == 2

    monkeypatch.setenv("SMARTCAR_CLIENT_SECRET", "not-the-secret-9Qx")
    with pytest.raises(CredentialsRejected) as raised:
        pull(data_dir)
    assert "not-the-secret-9Qx" not in str(raised.value)
    env = {**os.environ, "FLEETLAKE_DATA_DIR": str(data_dir)}
    cli = subprocess.run([sys.executable, "-m", "pipelines.cli", "pull"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 1 and "refused the application's credentials" in cli.stderr
    assert "not-the-secret-9Qx" not in cli.stdout + cli.stderr and "Traceback" not in cli.stderr


def test_a_fleet_larger_than_the_bucket_pulls_the_stalest_first_and_defers_the_rest(data_dir, monkeypatch):
    with SmartcarDouble(vehicles=300, page_size=100) as smartcar:
        for name, value in smartcar.env().items():
            monkeypatch.setenv(name, value)
        first = pull(data_dir)
        assert first.requests == 120 and len(first.pulled) == 117  # 3 pages of connections, then 117 vehicles
        assert len(first.deferred) == 183 and all(h is None for h in first.deferred.values())
        assert any("deferred 183" in line and "never pulled" in line for line in first.lines())
        assert smartcar.bucket_refusals == 0  # never knowingly over the application's bucket

        # Later rounds go to the vehicles not yet pulled (the stalest), as the bucket refills.
        lake = LakeResource(data_dir=str(data_dir))
        layout = SmartcarLayout(lake)
        bucket = json.loads(layout.bucket_file.read_text())
        bucket["level"], bucket["updated_at"] = 120, bucket["updated_at"] - 3600
        layout.bucket_file.write_text(json.dumps(bucket))
        smartcar.refill_bucket()  # an hour later
        second = pull(data_dir)
        assert not set(second.pulled) & set(first.pulled) and len(second.pulled) == 117
        assert smartcar.bucket_refusals == 0
        third = pull(data_dir)  # the bucket is empty now: the round says so and sends nothing
        assert third.stopped and "bucket" in third.stopped and third.requests == 0


def _round_against_a_fresh_double(data_dir: Path, monkeypatch, in_flight: int, capacity: float = 120):
    """One round of 24 vehicles (2 signal pages each, 20 ms a request) with a few that fail."""
    with SmartcarDouble(vehicles=24, page_size=100, signal_page_size=3, latency_s=0.02,
                        bucket_capacity=capacity) as double:
        for name, value in double.env().items():
            monkeypatch.setenv(name, value)
        double.vehicles["veh-0005"].state = "asleep"
        double.script("veh-0003", "server")  # retried with backoff, then fine
        double.script("veh-0007", "rate:3600")  # told to wait
        lake = LakeResource(data_dir=str(data_dir))
        smartcar = resource()
        bucket = RequestBucket(capacity=capacity, level=capacity)
        report = pull_round(smartcar.client(retry=FAST_RETRY), lake.landing, SmartcarLayout(lake),
                            Limits(max_in_flight=in_flight), bucket)
    return report, double


def test_vehicles_are_read_concurrently_within_the_limits_and_land_as_a_sequential_round(tmp_path, monkeypatch):
    sequential, one_by_one = _round_against_a_fresh_double(tmp_path / "a", monkeypatch, in_flight=1)
    concurrent, overlapping = _round_against_a_fresh_double(tmp_path / "b", monkeypatch, in_flight=4)
    assert one_by_one.max_in_flight == 1
    assert 1 < overlapping.max_in_flight <= 4  # overlapping, never more than allowed
    for report in (sequential, concurrent):
        assert len(report.pulled) == 23 and report.blocked == ["veh-0007"]
        assert report.errors == {"veh-0005": "VEHICLE_STATE:ASLEEP"}
        assert report.requests == 1 + 2 * 22 + 1 + 1 + 1  # connections, 2 pages each, a 500 retried, asleep, 429
    assert concurrent.pulled == sequential.pulled  # plan order, stalest first
    same = lambda d: (d["eventId"], d["eventType"], d["data"])  # noqa: E731 (deliveryId and deliveredAt differ)
    assert [same(d) for d in landed(tmp_path / "b")] == [same(d) for d in landed(tmp_path / "a")]
    assert connections(tmp_path / "b").keys() == connections(tmp_path / "a").keys()
    assert {v: r["calls_this_month"] for v, r in connections(tmp_path / "b").items()} == \
        {v: r["calls_this_month"] for v, r in connections(tmp_path / "a").items()}


def test_concurrent_reads_never_overdraw_the_bucket(tmp_path, monkeypatch):
    # 24 vehicles of 2 pages each and a bucket of 30: the plan expects one request a vehicle, so
    # the bucket runs dry in the middle of the round, with four reads in flight.
    report, double = _round_against_a_fresh_double(tmp_path, monkeypatch, in_flight=4, capacity=30)
    assert double.bucket_refusals == 0 and report.requests == 30
    assert len(double.calls("/v3/")) == 30
    assert not set(report.pulled) & set(report.deferred)
    assert len(report.pulled) + len(report.deferred) + len(report.blocked) == 24
    pages = {v: sum(1 for c in double.calls(f"/v3/vehicles/{v}/")) for v in report.pulled}
    assert all(n >= 2 for v, n in pages.items() if v not in report.errors)  # every landed vehicle was read whole
    assert len(landed(tmp_path)) == len(report.pulled)


def test_the_plan_keeps_the_interval_the_budget_and_retry_after():
    now = datetime(2026, 9, 10, 12, tzinfo=UTC)
    vehicles = [VehicleDue("a", now - timedelta(minutes=10)), VehicleDue("b", now - timedelta(hours=5)),
                VehicleDue("c", None), VehicleDue("d", now - timedelta(hours=1), calls_this_month=1500),
                VehicleDue("e", now - timedelta(hours=2), blocked_until=now + timedelta(minutes=5)),
                VehicleDue("f", now - timedelta(hours=9))]
    plan = plan_round(vehicles, Limits(), now, available=2)
    assert [v.vehicle_id for v in plan.pull] == ["c", "f"] and [v.vehicle_id for v in plan.deferred] == ["b"]
    assert plan.recent == ["a"] and plan.over_budget == ["d"] and plan.blocked == ["e"]
    # A budget of 100 calls with 20 days left spreads to one pull every ~4.8 h, not every 30 min.
    paced = plan_round([VehicleDue("g", now - timedelta(hours=3), calls_this_month=0)],
                       Limits(monthly_calls_per_vehicle=100), now, available=10)
    assert paced.recent == ["g"]
    assert plan_round([VehicleDue("a", now - timedelta(minutes=1))], Limits(min_interval=timedelta(0)), now, 5).pull


def test_a_monthly_budget_is_never_exceeded(data_dir, smartcar):
    for _ in range(3):
        report = pull(data_dir, min_interval=0, monthly_calls_per_vehicle=4, calls_per_pull=2)
    assert len(report.over_budget) == 5 and not report.pulled
    assert all(r["calls_this_month"] == 4 for r in connections(data_dir).values())


def test_connection_status_is_recorded_and_a_disconnected_vehicle_is_not_pulled(data_dir, smartcar):
    pull(data_dir)
    smartcar.disconnect("veh-0001")
    noticed = datetime.now(UTC)
    report = pull(data_dir, min_interval=0)
    assert report.disconnected == ["veh-0001"] and "veh-0001" not in report.pulled
    records = connections(data_dir)
    gone = records["veh-0001"]
    assert gone["status"] == "DISCONNECTED" and gone["disconnect_reason"] == "UNLISTED"
    assert gone["disconnected_at"] >= noticed - timedelta(seconds=1)
    assert records["veh-0000"]["connected_at"] == datetime(2026, 8, 1, tzinfo=UTC)
    smartcar.add_vehicle("veh-0001", "user-0009", connected_at="2026-09-02T00:00:00Z")  # connected again
    back = pull(data_dir, min_interval=0)
    assert "veh-0001" in back.newly_connected and "veh-0001" in back.pulled
    assert connections(data_dir)["veh-0001"]["user_id"] == "user-0009"


def test_the_pull_asset_and_its_schedule(data_dir, smartcar, tmp_path):
    defs = definitions_on(data_dir)
    schedule = defs.resolve_schedule_def("smartcar_pull_every_30_minutes")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    with dg.DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("smartcar_pull_job").execute_in_process(instance=instance)
    assert result.success
    [materialization] = result.asset_materializations_for_node("smartcar_pull")
    assert materialization.metadata["pulled"].value == 5


def test_secrets_never_reach_logs_landing_lake_or_metadata(data_dir, smartcar, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, "FLEETLAKE_DATA_DIR": str(data_dir), "DAGSTER_HOME": str(home)}
    outputs = []
    for argv in (["pull", "--max-in-flight", "1"], ["pull", "--min-interval", "0"], ["run"]):
        done = subprocess.run([sys.executable, "-m", "pipelines.cli", "-v", *argv], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(done.stdout + done.stderr)
        if argv[1:] == ["--max-in-flight", "1"]:
            assert smartcar.max_in_flight == 1  # the flag reaches the round
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        result = definitions_on(data_dir).resolve_job_def("smartcar_pull_job").execute_in_process(instance=instance)
        assert result.success
        outputs.extend(str(e) for e in instance.all_logs(result.run_id))
    smartcar.expire_tokens()
    tokens = [r["headers"]["Authorization"].removeprefix("Bearer ") for r in smartcar.calls("/v3/")]
    secrets = {CLIENT_SECRET, MANAGEMENT_TOKEN, *tokens}
    assert landed(data_dir) and tokens
    files = [p for root in (data_dir, home) for p in root.rglob("*") if p.is_file()]
    for secret in secrets:
        assert not any(secret in text for text in outputs), "a secret in the command's output"
        for path in files:
            assert secret.encode() not in path.read_bytes(), f"a secret in {path}"


def test_secrets_can_come_from_an_owner_only_file(data_dir, smartcar, monkeypatch, tmp_path):
    from pipelines.sources.smartcar.resource import SecretsError

    secrets_file = tmp_path / "smartcar.env"
    secrets_file.write_text(f"SMARTCAR_CLIENT_ID={smartcar.env()['SMARTCAR_CLIENT_ID']}\n"
                            f"export SMARTCAR_CLIENT_SECRET='{CLIENT_SECRET}'\n")
    monkeypatch.delenv("SMARTCAR_CLIENT_ID")
    monkeypatch.delenv("SMARTCAR_CLIENT_SECRET")
    monkeypatch.setenv("SMARTCAR_SECRETS_FILE", str(secrets_file))
    secrets_file.chmod(0o644)
    with pytest.raises(SecretsError, match="chmod 600") as refused:
        resource().credentials()
    assert CLIENT_SECRET not in str(refused.value)
    secrets_file.chmod(0o600)
    assert len(pull(data_dir).pulled) == 5
