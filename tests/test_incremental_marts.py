"""Incremental marts: a build after new landing recomputes only the vehicles the new data
touches, and the marts it leaves are identical, row for row, to a full rebuild from scratch
on the same landing, with late, duplicate and out-of-order deliveries among the new data."""

import gzip
import json
from pathlib import Path

import duckdb
import polars as pl
import pytest
from conftest import build
from polars.testing import assert_frame_equal

from assets.marts.build_state import MartScope, forget_mart_builds, touched_vehicles, LakeState
from storage.resources import LakeResource

# quality_results holds when each check ran; everything else must match exactly.
NOT_COMPARED = {"quality_results"}


def read_lines(path: Path) -> list[str]:
    data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    return data.decode().splitlines()


def vehicle_of(line: str) -> str | None:
    try:
        return json.loads(line)["data"]["vehicle"]["id"]
    except (ValueError, KeyError, TypeError):
        return None  # a malformed line: quarantined whichever run lands it


def land(landing: Path, relative: str, lines: list[str]) -> None:
    path = landing / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def marts_of(data_dir: Path) -> dict[str, pl.DataFrame]:
    """Every mart table, its rows in the order of all its columns."""
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        names = [n for (n,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'marts' "
                                           "ORDER BY table_name").fetchall() if n not in NOT_COMPARED]
        found = {}
        for name in names:
            columns = [c for (c,) in con.execute("SELECT column_name FROM duckdb_columns() WHERE schema_name = "
                                                 "'marts' AND table_name = ? ORDER BY column_index", [name]).fetchall()]
            order = ", ".join(f'"{c}"' for c in columns)
            found[name] = con.sql(f"SELECT * FROM marts.{name} ORDER BY {order}").pl()
        return found


def build_states(data_dir: Path) -> dict[str, int]:
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        return dict(con.execute("SELECT mart, ingest_seq FROM build_state.mart_builds").fetchall())


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    from pipelines.sources.simulator import SimulationConfig, simulate_fleet

    root = tmp_path_factory.mktemp("simulated")
    # The simulator's own faults include duplicate, late and malformed deliveries.
    simulate_fleet(SimulationConfig(vehicles=6, days=8, files_per_day=2), landing_dir=root / "landing",
                   truth_dir=root / "truth")
    return root / "landing"


@pytest.mark.parametrize("batch_vehicles", [100, 2])
def test_incremental_builds_leave_the_marts_a_full_rebuild_leaves(simulated, tmp_path, batch_vehicles):
    """With batches of two vehicles, the incremental builds recompute the vehicles with new
    data two at a time (each batch reads its vehicles' whole history)."""
    files = {p.relative_to(simulated).as_posix(): p for p in sorted(simulated.rglob("*.ndjson*"))}
    day = lambda n: [name for name in files if name.startswith(f"2026/09/{n:02d}/")]  # noqa: E731
    held_back = day(3)[1]  # delivered late: some vehicles' lines in the second run, the rest in the third
    lines = read_lines(files[held_back])
    vehicles = sorted({v for v in map(vehicle_of, lines) if v})
    late_vehicles = set(vehicles[:2])
    stem = held_back.split(".")[0]
    runs = [
        {name: read_lines(files[name]) for n in range(1, 6) for name in day(n) if name != held_back},
        {
            **{name: read_lines(files[name]) for n in range(6, 9) for name in day(n)},
            # out of order: a day's deliveries landed last first
            day(7)[1].split(".")[0] + ".ndjson": read_lines(files[day(7)[1]])[::-1],
            # redelivered: a whole file again, under another name, a run later
            day(2)[0].replace("deliveries-", "redelivered-").split(".")[0] + ".ndjson": read_lines(files[day(2)[0]]),
            f"{stem}-a.ndjson": [line for line in lines if vehicle_of(line) not in late_vehicles],
        },
        {f"{stem}-b.ndjson": [line for line in lines if vehicle_of(line) in late_vehicles]},
    ]
    runs[1].pop(day(7)[1])  # landed reversed instead, under its .ndjson name

    incremental, full = tmp_path / "incremental", tmp_path / "full"
    for root in (incremental, full):
        (root / "landing").mkdir(parents=True)
    for number, run in enumerate(runs):
        for name, content in run.items():
            land(incremental / "landing", name, content)
            land(full / "landing", name, content)
        report = build(incremental, batch_vehicles=batch_vehicles)
        assert report.ok, report.failed_checks
        states = build_states(incremental)
        assert states["marts__odometer_readings"] == states["charging"] == number + 1  # built from each ingest
        if number == 1 and batch_vehicles == 2:  # days 6-8 of all six vehicles, two at a time
            assert report.metadata["marts/maintenance_forecast"]["batches"] == 3
        kinds = {name: report.metadata[f"marts/{name}"]["build"] for name in ("maintenance_forecast", "odometer_readings")}
        if number == 1:  # every vehicle has new data: a new table, but the odometer resumes from each restart
            assert kinds["maintenance_forecast"].startswith("full") and kinds["odometer_readings"] == "vehicles"
        if number == 2:  # two vehicles' late lines
            assert kinds == {"maintenance_forecast": "vehicles", "odometer_readings": "vehicles"}
    report = build(full)
    assert report.ok, report.failed_checks

    built, rebuilt = marts_of(incremental), marts_of(full)
    assert set(built) == set(rebuilt)
    differ = {}
    for name in rebuilt:
        try:
            assert_frame_equal(built[name], rebuilt[name], check_exact=True)
        except AssertionError as difference:
            differ[name] = str(difference)
    assert not differ, differ
    assert rebuilt["odometer_readings"].height > 0 and rebuilt["charging_sessions"].height > 0


@pytest.mark.parametrize("bound", ["vehicles", "deliveries"])
def test_a_full_build_in_batches_of_vehicles_leaves_the_marts_one_batch_leaves(simulated, tmp_path, bound):
    """Batches of two vehicles, or of as many deliveries as the busiest vehicle has (one
    vehicle each: a batch is bounded by the history it reads as well as by its cars), give
    the same marts as one batch of the whole fleet (charging reads its readings in such
    batches and puts their facts together, so that cars of a model share capacity ratios
    across batches), and the per-vehicle marts say how they were built."""
    from conftest import definitions_on

    import dagster as dg

    from pipelines.build import build_everything

    batched, whole = tmp_path / "batched", tmp_path / "whole"
    for root in (batched, whole):
        for path in simulated.rglob("*.ndjson*"):
            land(root / "landing", path.relative_to(simulated).as_posix().split(".")[0] + ".ndjson", read_lines(path))
    assert build(whole, batch_vehicles=1_000, batch_deliveries=10**9).ok
    busiest = pl.read_delta(str(whole / "lake/raw/deliveries"))["vehicle_id"].value_counts()["count"].max()
    settings = {"vehicles": {"batch_vehicles": 2}, "deliveries": {"batch_vehicles": 1_000, "batch_deliveries": busiest}}
    instance = dg.DagsterInstance.ephemeral()
    assert build_everything(definitions_on(batched, **settings[bound]), instance).ok
    built, one_batch = marts_of(batched), marts_of(whole)
    assert set(built) == set(one_batch)
    for name in one_batch:
        assert_frame_equal(built[name], one_batch[name], check_exact=True)
    kinds = {key.path[-1]: event.asset_materialization.metadata["build"].value
             for key, event in instance.get_latest_materialization_events(
                 [dg.AssetKey(["marts", m]) for m in ("odometer_readings", "charging_sessions", "vehicles")]).items()}
    # six vehicles, two at a time, or one at a time
    assert kinds["odometer_readings"] == {"vehicles": "full, in 3 batches of vehicles",
                                          "deliveries": "full, in 6 batches of vehicles"}[bound]
    assert kinds["charging_sessions"] == "full" and kinds["vehicles"] == "full"


@pytest.mark.parametrize("weights, most_items, most_weight, batches", [
    ([], 2, 10, []),
    ([("a", 3), ("b", 3), ("c", 3)], 2, 100, [{"a", "b"}, {"c"}]),  # at most two vehicles
    ([("a", 4), ("b", 5), ("c", 1), ("d", 9)], 10, 9, [{"a", "b"}, {"c"}, {"d"}]),  # at most 9 deliveries
    ([("a", 1), ("b", 30), ("c", 1)], 10, 9, [{"a"}, {"b"}, {"c"}]),  # heavier than a batch: alone
    ([("a", 0), ("b", 0)], 5, 1, [{"a", "b"}]),  # vehicles without deliveries (erased)
])
def test_batches_are_bounded_by_vehicles_and_by_deliveries(weights, most_items, most_weight, batches):
    from assets.marts.protocol import bounded_batches

    assert bounded_batches(weights, most_items, most_weight) == [frozenset(b) for b in batches]


def test_only_vehicles_with_new_data_are_touched(simulated, tmp_path):
    """The late lines of two vehicles for an old day touch those two vehicles alone; a build
    with nothing new touches none."""
    names = sorted(p.relative_to(simulated).as_posix() for p in simulated.rglob("*.ndjson*"))
    late = names[3]
    lines = read_lines(simulated / late)
    vehicles = sorted({v for v in map(vehicle_of, lines) if v})
    chosen = set(vehicles[:2])
    for name in names:
        if name != late:
            land(tmp_path / "landing", name.split(".")[0] + ".ndjson", read_lines(simulated / name))
    assert build(tmp_path).ok
    lake = LakeResource(data_dir=str(tmp_path))
    seen = LakeState.of(lake)
    assert touched_vehicles(lake, seen, LakeState.of(lake)) == frozenset()
    land(tmp_path / "landing", "late.ndjson", [line for line in lines if vehicle_of(line) in chosen])
    assert build(tmp_path).ok
    assert touched_vehicles(lake, seen, LakeState.of(lake)) == frozenset(chosen)


def test_forgetting_the_build_state_makes_the_next_build_full(tmp_path):
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        from assets.marts.build_state import record_state, recorded_state

        state = LakeState({}, 3)
        record_state(con, "m", "{}", state)
        assert recorded_state(con, "m", "{}") == state
        assert recorded_state(con, "m", '{"other": "config"}') is None
        forget_mart_builds(con)
        assert recorded_state(con, "m", "{}") is None
    assert MartScope(None, state).full and not MartScope(frozenset(), state).full


def test_a_batched_full_build_cut_short_leaves_the_marts_as_they_were(simulated, tmp_path, monkeypatch):
    """Each batch of a full build commits to a staging table, and the marts are replaced only
    once every batch is in: a build that fails in its second batch leaves every mart as it
    was, and the next build cleans up and finishes it."""
    import assets.marts.protocol as protocol
    from pipelines.build import build_everything
    from conftest import definitions_on

    for path in simulated.rglob("*.ndjson*"):
        land(tmp_path / "landing", path.relative_to(simulated).as_posix().split(".")[0] + ".ndjson", read_lines(path))
    assert build(tmp_path, batch_vehicles=2).ok
    before = marts_of(tmp_path)

    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        forget_mart_builds(con)  # the next build is a full one

    def fail_after_the_first_batch(*args, **kwargs):
        raise RuntimeError("interrupted in the second batch")

    monkeypatch.setattr(protocol, "add_rows", fail_after_the_first_batch)
    report = build_everything(definitions_on(tmp_path, batch_vehicles=2))
    assert report.errors and all("interrupted in the second batch" in str(e) for e in report.errors)
    after = marts_of(tmp_path)
    assert {n for n in after if n.startswith("_building_")}, "the first batches were committed to staging tables"
    assert {n: f for n, f in after.items() if not n.startswith("_building_")}.keys() == before.keys()
    for name, frame in before.items():
        assert_frame_equal(after[name], frame, check_exact=True)

    monkeypatch.undo()
    assert build(tmp_path, batch_vehicles=2).ok
    rebuilt = marts_of(tmp_path)
    assert rebuilt.keys() == before.keys()
    for name, frame in before.items():
        assert_frame_equal(rebuilt[name], frame, check_exact=True)


def test_a_build_with_another_version_of_the_marts_code_is_a_full_one(simulated, tmp_path, monkeypatch):
    """What a changed mart computes differently is not new data: after an upgrade (another
    digest of the `assets` package) every mart is rebuilt whole, and then incrementally again."""
    import assets.marts.build_state as build_state

    for path in simulated.rglob("*.ndjson*"):
        land(tmp_path / "landing", path.relative_to(simulated).as_posix().split(".")[0] + ".ndjson", read_lines(path))
    assert build(tmp_path).ok
    assert build(tmp_path).metadata["marts/odometer_readings"]["build"] == "vehicles"  # nothing new: none rebuilt
    monkeypatch.setattr(build_state, "code_version", lambda: "another version")
    upgraded = build(tmp_path).metadata
    assert all(upgraded[f"marts/{name}"]["build"].startswith("full")
               for name in ("odometer_readings", "daily_mileage", "charging_sessions", "maintenance_forecast"))
    assert build(tmp_path).metadata["marts/charging_sessions"]["build"] == "vehicles"


def test_the_code_version_is_a_digest_of_the_assets_source(tmp_path, monkeypatch):
    import shutil

    import assets.marts.build_state as build_state

    copy = tmp_path / "assets"
    shutil.copytree(build_state.ASSETS_PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    versions = []
    for change in (None, "mileage", "pycache"):
        if change == "mileage":
            sql = next((copy / "marts").rglob("*.sql"))
            sql.write_text(sql.read_text() + "\n-- changed\n")
        if change == "pycache":  # compiled files are not source
            (copy / "marts" / "__pycache__").mkdir(exist_ok=True)
            (copy / "marts" / "__pycache__" / "x.pyc").write_bytes(b"\0")
        monkeypatch.setattr(build_state, "ASSETS_PACKAGE", copy)
        build_state.code_version.cache_clear()
        versions.append(build_state.code_version())
    build_state.code_version.cache_clear()
    assert versions[0] != versions[1] == versions[2]


def test_a_car_whose_deliveries_name_another_model_takes_both_models_cars_into_charging(tmp_path):
    """Cars of one make and model share capacity ratios: a car that moved to another model
    leaves its old model's ratios, so the cars of both are recomputed."""
    from types import SimpleNamespace

    from deliveries import delivery, odometer, write_landing

    from assets.marts.charging.assets import same_models

    cars = {"a": ("NISSAN", "Leaf"), "b": ("NISSAN", "Leaf"), "c": ("KIA", "EV6"), "d": ("BMW", "i3")}
    write_landing(tmp_path / "landing" / "first.ndjson", [
        delivery(f"e-{car}", car, [odometer(1000.0, "2026-09-01T08:00:00.000Z")], make=make, model=model)
        for car, (make, model) in cars.items()])
    assert build(tmp_path).ok
    lake = LakeResource(data_dir=str(tmp_path))
    seen = LakeState.of(lake)
    write_landing(tmp_path / "landing" / "second.ndjson", [
        delivery("e-b2", "b", [odometer(1010.0, "2026-09-02T08:00:00.000Z")], delivered_at=1756800000000,
                 make="KIA", model="EV6")])
    assert build(tmp_path).ok
    scope = MartScope(touched_vehicles(lake, seen, LakeState.of(lake)), LakeState.of(lake))
    assert scope.vehicles == {"b"}
    assert same_models(SimpleNamespace(lake=lake, scope=scope)).vehicles == {"a", "b", "c"}
