"""`fleetlake run` on a landing that holds a valid fleet and every kind of poison beside it,
as an attacker or an unlucky sender would leave it: the run goes on, every file, line and
signal has an outcome that the accounting shows exactly, nothing outside landing is read,
nothing is written outside the data directory, and the valid fleet reaches the marts as if
it were alone."""

import json
import os
import shutil
import stat
import subprocess
import zlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from conftest import build, lake_table, mart
from pipelines.build import BuildReport
from deliveries import delivery, odometer, signal, write_landing

import assets.raw
from deltalake import DeltaTable
from storage import tables
from pipelines.cli import main

DAY1, DAY2 = "2026-09-01", "2026-09-02"
SEPT_1 = 1788253200000  # 2026-09-01T09:00:00Z, in milliseconds
SEPT_1_DAY = date(2026, 9, 1)


def at(day: str, hour: int) -> str:
    return f"{day}T{hour:02d}:00:00.000Z"


def reading(event_id: str, vehicle: str, day: str, hour: int, km: float) -> dict:
    delivered = datetime.fromisoformat(at(day, hour).replace("Z", "+00:00"))
    return delivery(event_id, vehicle, [odometer(km, at(day, hour)),
                                        signal("tractionbattery-stateofcharge", {"value": 60, "unit": "percent"},
                                               at(day, hour))],
                    delivered_at=int(delivered.timestamp() * 1000))


def valid_fleet(landing: Path) -> int:
    """Two vehicles over two days, in a plain and a gzip file. Returns its line count."""
    first = [reading(f"v{h}", "car-a", DAY1, h, 1000 + 10 * h) for h in range(6, 12)]
    second = [reading(f"w{h}", "car-b", DAY2, h, 500 + 5 * h) for h in range(6, 12)] + [
        reading(f"x{h}", "car-a", DAY2, h, 1200 + 10 * h) for h in range(6, 12)]
    write_landing(landing / "fleet/2026/09/01.ndjson", first)
    write_landing(landing / "fleet/2026/09/02.ndjson.gz", second)
    return len(first) + len(second)


def flushed_gzip(lines: list[dict]) -> tuple[bytes, list[int]]:
    """A gzip member, flushed after each line, and where each line's compressed bytes end."""
    packer = zlib.compressobj(wbits=31)
    data, ends = b"", []
    for line in lines:
        data += packer.compress(json.dumps(line).encode() + b"\n") + packer.flush(zlib.Z_FULL_FLUSH)
        ends.append(len(data))
    return data + packer.flush(), ends


def bad_time(event_id: str, value: str, *, field: str = "deliveredAt") -> str:
    """A delivery whose `field` (deliveredAt, or its signal's oemUpdatedAt/retrievedAt) is `value`, raw JSON."""
    line = json.dumps(delivery(event_id, "times-car", [signal("odometer-traveleddistance",
                                                               {"value": 1, "unit": "km"}, at=None)],
                               delivered_at=SEPT_1))
    if field == "deliveredAt":
        return line.replace(str(SEPT_1), value)
    return line.replace('"meta": {}', f'"meta": {{"{field}": {value}}}')


TRAVERSAL_ID = "../../../../escape"
LONG_ID = "L" * 10_000


def read_as_an_unprivileged_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """Root reads any file: make ingest refuse a file without read permission as the kernel
    would for an unprivileged user."""
    real_read = assets.raw.read_landing_file

    def read(path, listed):
        if not os.stat(path).st_mode & stat.S_IRUSR:
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path, listed)

    monkeypatch.setattr(assets.raw, "read_landing_file", read)


def poison(data_dir: Path, outside: Path) -> int:
    """A valid fleet, and beside it every poison (files outside landing in `outside`). Returns
    the valid fleet's line count."""
    landing = data_dir / "landing"
    lines = valid_fleet(landing)

    cut_lines = [reading(f"c{i}", "cut-car", DAY1, 8 + i, 100 + i) for i in range(5)]
    whole, ends = flushed_gzip(cut_lines)
    (landing / "cut.ndjson.gz").write_bytes(whole[:ends[2] + 5])  # cut inside the fourth line
    (landing / "cut.complete").write_bytes(whole)  # kept aside, to replace the cut file later
    (landing / "junk.ndjson.gz").write_bytes(bytes(range(3, 256)) * 4)
    (landing / "header-junk.ndjson.gz").write_bytes(whole[:10] + b"\xff" * 64)
    locked = write_landing(landing / "locked.ndjson", [reading("k1", "locked-car", DAY1, 9, 42)])
    locked.chmod(0)

    name = os.path.join(os.fsencode(landing), b"caf\xe9.ndjson")
    with open(name, "wb") as f:
        f.write(json.dumps(reading("u1", "cafe-car", DAY1, 9, 7)).encode() + b"\n")

    write_landing(landing / "times.ndjson", [
        *(bad_time(f"d{i}", v) for i, v in enumerate(["1e20", "1e300", "NaN", "Infinity", "-1e20", "1e400",
                                                        '"infinity"', '"20000-01-01T00:00:00Z"'])),
        bad_time("t-oem-huge", "1e20", field="oemUpdatedAt"), bad_time("t-oem-nan", "NaN", field="oemUpdatedAt"),
        bad_time("t-oem-inf", '"infinity"', field="oemUpdatedAt"),
        bad_time("t-retrieved", "1e300", field="retrievedAt"),
        bad_time("t-9999", '"9999-06-01T00:00:00Z"'), bad_time("t-1970", "0"), bad_time("t-1967", "-94694400"),
        reading("t-ahead", "times-car", (datetime.now(UTC) + timedelta(days=3)).date().isoformat(), 8, 5),
    ])
    write_landing(landing / "ids.ndjson", [reading("i1", TRAVERSAL_ID, DAY1, 9, 10),
                                           reading("i2", TRAVERSAL_ID, DAY2, 9, 20),
                                           reading("i3", LONG_ID, DAY1, 9, 30)])
    write_landing(landing / "blank.ndjson", ["   ", "\t", " \t\r"])

    write_landing(outside / "secret.ndjson", [reading("s1", "secret-car", DAY1, 9, 1)])
    (landing / "secret.ndjson").symlink_to(outside / "secret.ndjson")
    (landing / "elsewhere").symlink_to(outside, target_is_directory=True)
    write_landing(landing / ".in-flight.ndjson", [reading("h1", "hidden-car", DAY1, 9, 1)])
    write_landing(landing / ".staging/part.ndjson", [reading("h2", "hidden-car", DAY1, 9, 1)])
    os.mkfifo(landing / "fifo.ndjson")
    return lines


@pytest.fixture(scope="module")
def hostile_built(tmp_path_factory) -> tuple[Path, int, BuildReport]:
    """The poisoned landing, built once for this module: its data dir, the valid fleet's line
    count and the build's report. Tests read it, or change a copy (`hostile`), except the
    last one that uses it."""
    data_dir = tmp_path_factory.mktemp("hostile") / "data"
    (data_dir / "landing").mkdir(parents=True)
    lines = poison(data_dir, tmp_path_factory.mktemp("outside"))
    with pytest.MonkeyPatch.context() as monkeypatch:
        read_as_an_unprivileged_user(monkeypatch)
        report = build(data_dir)
    return data_dir, lines, report


@pytest.fixture
def hostile(hostile_built, tmp_path: Path) -> Path:
    """A copy of the built poisoned landing that a test may change (`cp -a`: the fifo, the
    symlinks and the unreadable file as they were). Not for a rebuild: a copy's ctimes are new."""
    built, _, _ = hostile_built
    copy = tmp_path / "hostile"
    subprocess.run(["cp", "-a", str(built), str(copy)], check=True)
    return copy


VALID_VEHICLES = ["car-a", "car-b"]


def valid_part(data_dir: Path, table: str, order: str) -> pl.DataFrame:
    return mart(data_dir, table, order).filter(pl.col("vehicle_id").is_in(VALID_VEHICLES))


@pytest.mark.pipeline  # builds through Dagster (the module's fixture)
def test_poison_files_are_quarantined_and_everything_else_is_ingested_exactly(hostile_built, tmp_path):
    data_dir, valid_lines, report = hostile_built  # only read here
    assert report.ok, report.failed_checks
    assert [w.split(" — ")[0] for w in report.warnings] == ["check raw_deliveries:landing_freshness did not pass"]
    today = datetime.now(UTC).date()

    files = lake_table(data_dir, "quarantine", "files").sort("source_file")
    assert files.select("source_file", "reason", "lines_kept").rows() == [
        ("cut.ndjson.gz", "truncated_gzip", 3), ("header-junk.ndjson.gz", "corrupt_gzip", 0),
        ("junk.ndjson.gz", "corrupt_gzip", 0), ("locked.ndjson", "unreadable", 0)]
    sizes = {p.name: p.stat().st_size for p in (data_dir / "landing").iterdir() if p.is_file() and not p.is_symlink()}
    assert files["size"].to_list() == [sizes[n] for n in files["source_file"]]
    assert files["sha256"].null_count() == 1  # the unreadable file: its content is unknown
    assert files.filter(pl.col("reason") == "unreadable")["detail"].item() == "PermissionError: Permission denied"

    deliveries = lake_table(data_dir, "raw", "deliveries")
    by_file = deliveries.group_by("source_file").len().sort("source_file").rows()
    assert by_file == [("caf\\xe9.ndjson", 1), ("cut.ndjson.gz", 3), ("fleet/2026/09/01.ndjson", 6),
                       ("fleet/2026/09/02.ndjson.gz", 12), ("ids.ndjson", 3), ("times.ndjson", 8)]
    assert not {"secret-car", "hidden-car", "locked-car"} & set(deliveries["vehicle_id"])

    lines = lake_table(data_dir, "quarantine", "deliveries").sort("source_file", "line_no")
    assert lines.select("source_file", "line_no", "reason").rows() == [
        ("blank.ndjson", 1, "empty_line"), ("blank.ndjson", 2, "empty_line"), ("blank.ndjson", 3, "empty_line"),
        *(("times.ndjson", n, "invalid_delivered_at") for n in range(1, 9))]

    held = lake_table(data_dir, "quarantine", "readings").sort("event_id")
    assert held.select("event_id", "reason", "day").rows() == [
        ("t-1967", "implausible_timestamp", date(2020, 1, 1)),
        ("t-1970", "implausible_timestamp", date(2020, 1, 1)),
        ("t-9999", "implausible_timestamp", today),
        ("t-ahead", "implausible_timestamp", today), ("t-ahead", "implausible_timestamp", today),
        ("t-oem-huge", "invalid_timestamp", SEPT_1_DAY),
        ("t-oem-inf", "invalid_timestamp", SEPT_1_DAY),
        ("t-oem-nan", "invalid_timestamp", SEPT_1_DAY),
        ("t-retrieved", "invalid_timestamp", SEPT_1_DAY),
    ]

    health = mart(data_dir, "pipeline_health", "day")
    totals = health.select(pl.exclude("day").sum()).row(0, named=True)
    kept = valid_lines + 3 + 1 + 16 + 3 + 3  # fleet, the cut file's complete lines, café, times, ids, blank
    assert totals["deliveries_landed"] == kept
    assert (totals["deliveries_parsed"], totals["duplicates"], totals["quarantined"]) == (kept - 11, 0, 11)
    assert totals["files_quarantined"] == 4
    assert totals["signals"] == 2 * (kept - 11) - 7  # two signals a delivery, one for the seven bad-time ones
    assert totals["signals_quarantined"] == 9 and totals["signal_errors"] == 0
    assert totals["signals"] == totals["signals_read"] + totals["signals_quarantined"]
    assert health.filter(pl.col("files_quarantined") > 0)["day"].to_list() == [today]

    results = mart(data_dir, "quality_results")
    lake_check = results.filter(pl.col("check") == "lake_signals_accounted")
    assert lake_check.select("asset", "scope", "passed").rows() == [("pipeline_health", "lake", True)]
    assert json.loads(lake_check["details"].item())[0]["raw_signals"] == totals["signals"]
    batch_checks = results.filter(pl.col("check") == "landed_lines_accounted")
    assert batch_checks.height == 10 and batch_checks["passed"].all()

    # Nothing from outside landing reached the lake, not even its quarantine.
    for table in ("raw/deliveries", "quarantine/deliveries", "quarantine/files"):
        text = lake_table(data_dir, *table.split("/")).write_ndjson()
        assert "secret" not in text and "hidden-car" not in text and "fifo" not in text

    # The valid fleet is untouched: exactly what a landing of it alone gives.
    alone = tmp_path / "alone"
    valid_fleet(alone / "landing")
    assert build(alone).ok
    for table, order in [("daily_mileage", "vehicle_id, day"), ("vehicles", "vehicle_id"),
                         ("mileage_verification", "vehicle_id, period_start")]:
        assert valid_part(data_dir, table, order).equals(valid_part(alone, table, order)), table
    assert (lake_table(data_dir, "readings").filter(pl.col("vehicle_id").is_in(VALID_VEHICLES))
            .sort("event_id", "metric").drop("batch_id", "landed_on")
            .equals(lake_table(alone, "readings").sort("event_id", "metric").drop("batch_id", "landed_on")))


@pytest.mark.pipeline  # builds through Dagster (the module's fixture)
def test_mileage_statements_for_hostile_vehicle_ids_stay_in_the_statements_folder(hostile_built, hostile,
                                                                                 monkeypatch):
    data_dir = hostile  # built once already: a copy of hostile_built
    assert hostile_built[2].ok
    monkeypatch.setenv("FLEETLAKE_DATA_DIR", str(data_dir))
    before = set(data_dir.parent.iterdir())
    for vehicle_id in (TRAVERSAL_ID, LONG_ID, "car-a"):
        assert main(["--data-dir", str(data_dir), "mileage", vehicle_id, "--from", DAY1, "--to", DAY2]) == 0
    assert set(data_dir.parent.iterdir()) == before  # nothing escaped next to the data directory
    written = sorted(p.name for p in (data_dir / "statements").iterdir())
    stems = sorted({n.split(".json")[0].split(".csv")[0].removesuffix(".evidence") for n in written})
    assert len(written) == 9 and stems[0] == "mileage-2026-09-01-2026-09-02-car-a"
    assert all(len(s) == len("mileage-2026-09-01-2026-09-02-vehicle.") + 20 for s in stems[1:])
    statement = json.loads((data_dir / "statements" / f"{stems[1]}.json").read_text())
    assert statement["vehicles"][0]["vehicle_id"] in (TRAVERSAL_ID, LONG_ID)


@pytest.mark.pipeline  # builds through Dagster (the module's fixture)
def test_a_quarantined_file_is_not_retried_unchanged_and_is_ingested_once_readable_or_replaced(hostile_built,
                                                                                               monkeypatch):
    """On the module's build itself, not a copy: a copy would change the unreadable file's
    ctime, which is part of its version. (Last of the tests that use it: it changes it.)"""
    data_dir, _, first = hostile_built
    assert first.ok
    read_as_an_unprivileged_user(monkeypatch)
    before = lake_table(data_dir, "raw", "batches").height
    again = build(data_dir)
    assert again.ok and again.metadata["raw_deliveries"]["new_files"] == 0
    assert lake_table(data_dir, "raw", "batches").height == before

    landing = data_dir / "landing"
    (landing / "locked.ndjson").chmod(0o644)  # its permissions change, not its content or mtime
    os.replace(landing / "cut.complete", landing / "cut.ndjson.gz.tmp")
    os.replace(landing / "cut.ndjson.gz.tmp", landing / "cut.ndjson.gz")  # the sender re-sends it whole
    report = build(data_dir)
    assert report.ok, report.failed_checks
    new = report.metadata["raw_deliveries"]
    assert (new["new_files"], new["new_landing_lines"], new["new_parsed"], new["new_duplicates"],
            new["new_files_quarantined"]) == (2, 6, 3, 3, 0)
    deliveries = lake_table(data_dir, "raw", "deliveries")
    assert sorted(deliveries.filter(pl.col("vehicle_id") == "cut-car")["event_id"]) == [f"c{i}" for i in range(5)]
    assert deliveries.filter(pl.col("vehicle_id") == "locked-car")["event_id"].to_list() == ["k1"]
    # The quarantine keeps what happened to the versions it saw; the counts still reconcile.
    totals = mart(data_dir, "pipeline_health").select(pl.exclude("day").sum()).row(0, named=True)
    assert totals["files_quarantined"] == 4
    assert totals["signals"] == totals["signals_read"] + totals["signals_quarantined"]
    daily = mart(data_dir, "daily_mileage").filter(pl.col("vehicle_id") == "cut-car")
    assert daily.select("distance_km", "readings").rows() == [(4.0, 5)]


def test_a_signal_left_without_an_outcome_fails_a_blocking_check_and_the_warning_names_its_day(data_dir):
    write_landing(data_dir / "landing/a.ndjson", [reading("a1", "car-a", DAY1, 8, 1000),
                                                  reading("a2", "car-a", DAY2, 8, 1010)])
    assert build(data_dir).ok
    # A lake written by an older version: raw signals filed under a day that is no partition.
    lake = data_dir / "lake"
    DeltaTable(str(lake / "raw/signals")).update({"day": "'1969-12-31'"}, predicate=f"day = '{DAY2}'")
    batches = pl.read_delta(str(lake / "raw/batches"))
    tables.overwrite(lake / "raw/batches", batches.with_columns(
        days=pl.col("days").list.eval(pl.element().replace(DAY2, "1969-12-31"))))
    report = build(data_dir)
    assert report.failed_checks == ["marts/pipeline_health:lake_signals_accounted"]
    [warning] = [w for w in report.warnings if w.startswith("readings not built")]
    assert warning.startswith("readings not built for 1 day(s) outside the partitions 2020-01-01..")
    assert warning.endswith("(UTC): 1969-12-31; their signals have no outcome")
    result = json.loads((data_dir / "lake/quality/pipeline_health/lake_signals_accounted/lake.json").read_text())
    details = result["details"][0]
    assert (result["passed"], details["days_without_outcome"], details["raw_signals"], details["signals_read"]) == (
        False, ["1969-12-31"], 4, 2)


def test_the_lake_signal_accounting_is_a_blocking_check_of_pipeline_health():
    from pipelines.definitions import defs

    specs = {s.key.to_user_string(): s for a in defs.resolve_asset_graph().assets_defs for s in a.check_specs}
    assert specs["marts/pipeline_health:lake_signals_accounted"].blocking


def test_fleetlake_run_exits_0_on_a_poisoned_landing_and_says_what_it_quarantined(data_dir, tmp_path_factory):
    import subprocess
    import sys

    landing = data_dir / "landing"
    valid_fleet(landing)
    whole, ends = flushed_gzip([reading(f"c{i}", "cut-car", DAY1, 8 + i, 100 + i) for i in range(3)])
    (landing / "cut.ndjson.gz").write_bytes(whole[:ends[1] + 2])
    (landing / "random.ndjson.gz").write_bytes(bytes(range(256)))
    write_landing(landing / "times.ndjson", [bad_time("d1", "1e300"), bad_time("t1", "NaN", field="oemUpdatedAt")])
    outside = tmp_path_factory.mktemp("outside")
    write_landing(outside / "passwd.ndjson", ["root:x:0:0:root:/root:/bin/bash"])
    (landing / "passwd.ndjson").symlink_to(outside / "passwd.ndjson")
    env = {**os.environ, "FLEETLAKE_DATA_DIR": str(data_dir)}
    run = subprocess.run([sys.executable, "-m", "pipelines.cli", "run"], cwd=Path(__file__).parents[1], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert ("ingest: 5 new files, 22 lines → 21 parsed, 0 duplicates, 1 quarantined; 2 files quarantined "
            "(unreadable or broken gzip, see lake/quarantine/files)") in run.stdout
    assert "root:x" not in lake_table(data_dir, "quarantine", "deliveries").write_csv()
