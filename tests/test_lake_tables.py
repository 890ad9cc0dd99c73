"""The lake's Delta tables: one commit per write, an ingest cut short is redone exactly once,
a day's readings are replaced in place or added to, and old versions are vacuumed after the retention."""

import shutil

import polars as pl
import pytest
from conftest import lake_table
from deliveries import delivery, odometer, write_landing
from deltalake import DeltaTable

from assets.raw import ingest_landing, vacuum_raw
from assets.readings import build_day, stale_days, vacuum_readings
from storage import tables
from storage.layout import RawLayout, ReadingsLayout
from storage.resources import LakeResource



def _at(hour: int, minute: int = 0) -> str:
    return f"2025-09-01T{hour:02d}:{minute:02d}:00.000Z"  # the morning before the deliveries' time


def _landing(root, files: int = 3) -> None:
    for f in range(files):
        write_landing(root / f"landing/f{f}.ndjson", [
            delivery(f"e{f}-{i}", signals=[odometer(1000 + 10 * f + i, _at(8 + f, i))])
            for i in range(4)] + [delivery("e0-0"), "{oops"])


def _raw(root) -> dict[str, pl.DataFrame]:
    """The raw tables, without when they were ingested."""
    return {t: lake_table(root, *p).drop("ingested_at", strict=False).sort(pl.all()) for t, p in {
        "deliveries": ("raw", "deliveries"), "duplicates": ("raw", "duplicates"), "signals": ("raw", "signals"),
        "quarantine": ("quarantine", "deliveries")}.items()}


def test_each_raw_table_gets_one_commit_per_ingest_group(tmp_path):
    _landing(tmp_path)
    lake = LakeResource(data_dir=str(tmp_path))
    assert len(ingest_landing(lake)) == 3  # one group: three landing files parsed together
    for table in ("raw/batches", "raw/deliveries", "raw/duplicates", "raw/signals", "quarantine/deliveries"):
        assert DeltaTable(str(tmp_path / "lake" / table)).version() == 0, table
    assert not list((tmp_path / "lake").rglob("_batches"))  # no manifests of our own


def test_an_ingest_cut_short_before_its_commit_is_redone_exactly_once(tmp_path, monkeypatch):
    cut, clean = tmp_path / "cut", tmp_path / "clean"
    _landing(cut)
    _landing(clean)
    append = tables.append

    def crash_at_the_commit(path, frame, partition_by=None):
        if path.name == "batches":
            raise KeyboardInterrupt("killed")  # the raw rows are in, the group's batches are not
        append(path, frame, partition_by)

    monkeypatch.setattr(tables, "append", crash_at_the_commit)
    with pytest.raises(KeyboardInterrupt):
        ingest_landing(LakeResource(data_dir=str(cut)))
    monkeypatch.setattr(tables, "append", append)
    cut_lake = LakeResource(data_dir=str(cut))
    # Readers do not see the rows of the group that did not commit.
    assert RawLayout(cut_lake).committed_seq == 0
    assert RawLayout(cut_lake).scan("deliveries", pl.Schema({"event_id": pl.String})).collect().height == 0
    assert lake_table(cut, "raw", "deliveries").height == 12  # on disk, uncommitted

    assert len(ingest_landing(cut_lake)) == 3
    assert len(ingest_landing(LakeResource(data_dir=str(clean)))) == 3
    cut_tables, clean_tables = _raw(cut), _raw(clean)
    for name in cut_tables:
        assert cut_tables[name].equals(clean_tables[name]), name
    assert cut_tables["deliveries"]["event_id"].n_unique() == 12
    assert cut_tables["duplicates"].height == 3


def _late(root, name: str, value: float) -> None:
    """A late delivery for the first files' day: a good odometer and one in an unknown unit."""
    write_landing(root / f"landing/{name}.ndjson", [delivery(name, signals=[
        odometer(value, _at(7)), odometer(value, _at(6), unit="furlongs")])])


def _build(lake: LakeResource) -> None:
    states = ReadingsLayout(lake).states()
    for day in stale_days(lake):
        build_day(lake, day, RawLayout(lake).day_seqs()[day], states.get(day))


def _day_tables(root) -> dict[str, pl.DataFrame]:
    return {kind: lake_table(root, *kind.split("/")).sort(pl.all())
            for kind in ("readings", "signal_errors", "quarantine/readings")}


def _rebuilt_whole(root, tmp_path) -> dict[str, pl.DataFrame]:
    """The same landing built in a new lake in one go."""
    fresh = tmp_path / "fresh"
    shutil.copytree(root / "landing", fresh / "landing")
    lake = LakeResource(data_dir=str(fresh))
    ingest_landing(lake)
    _build(lake)
    return _day_tables(fresh)


def test_a_day_is_replaced_in_its_partition_and_rebuilt_only_when_new_signals_come(tmp_path):
    _landing(tmp_path, files=1)
    lake = LakeResource(data_dir=str(tmp_path))
    ingest_landing(lake)
    [day] = stale_days(lake)
    build_day(lake, day, RawLayout(lake).day_seqs()[day])
    build_day(lake, day, RawLayout(lake).day_seqs()[day])  # again: replaced, not appended
    assert lake_table(tmp_path, "readings").height == 4
    assert stale_days(lake) == []
    write_landing(tmp_path / "landing/late.ndjson", [delivery("late", signals=[odometer(999, _at(7))])])
    ingest_landing(lake)
    assert stale_days(lake) == [day]
    build_day(lake, day, RawLayout(lake).day_seqs()[day])
    assert lake_table(tmp_path, "readings").height == 5
    assert ReadingsLayout(lake).states()[day]["source_seq"] == 2


def test_a_built_day_gets_only_the_readings_of_later_signals(tmp_path):
    root = tmp_path / "lake"
    _landing(root, files=1)
    lake = LakeResource(data_dir=str(root))
    ingest_landing(lake)
    _build(lake)
    first_files = set(tables.files(root / "lake" / "readings")["path"])
    _late(root, "late", 999)
    ingest_landing(lake)
    _build(lake)
    readings = DeltaTable(str(root / "lake" / "readings"))
    assert readings.history(1)[0]["operationParameters"]["mode"] == "Append"
    assert first_files < set(tables.files(root / "lake" / "readings")["path"])  # kept, not rewritten
    [state] = ReadingsLayout(lake).states().values()
    assert state["success"] and (state["raw_signals"], state["signals_quarantined"]) == (6, 1)
    built = _day_tables(root)
    assert built["readings"].height == 5 and built["quarantine/readings"].height == 1
    for kind, frame in _rebuilt_whole(root, tmp_path).items():
        assert built[kind].drop("ingested_at", strict=False).equals(frame.drop("ingested_at", strict=False)), kind


def test_a_day_whose_additions_were_cut_short_is_rebuilt_whole(tmp_path, monkeypatch):
    root = tmp_path / "lake"
    _landing(root, files=1)
    lake = LakeResource(data_dir=str(root))
    ingest_landing(lake)
    _build(lake)
    _late(root, "late", 999)
    ingest_landing(lake)
    replace, state_table = tables.replace, ReadingsLayout(lake).state_table

    def crash_before_the_state(path, *args, **kwargs):
        if path == state_table:
            raise KeyboardInterrupt("killed")
        return replace(path, *args, **kwargs)

    monkeypatch.setattr(tables, "replace", crash_before_the_state)
    with pytest.raises(KeyboardInterrupt):
        _build(lake)
    monkeypatch.undo()
    assert lake_table(root, "readings").height == 5  # added, but the day not marked built
    _build(lake)  # the added readings are not added twice
    assert stale_days(lake) == []
    built = _day_tables(root)
    for kind, frame in _rebuilt_whole(root, tmp_path).items():
        assert built[kind].drop("ingested_at", strict=False).equals(frame.drop("ingested_at", strict=False)), kind


def test_old_versions_are_vacuumed_after_the_retention(tmp_path):
    _landing(tmp_path, files=1)
    kept = LakeResource(data_dir=str(tmp_path), retention_hours=1)
    ingest_landing(kept)
    [day] = stale_days(kept)
    for _ in range(2):
        build_day(kept, day, RawLayout(kept).day_seqs()[day])
    readings = tmp_path / "lake" / "readings"
    assert len(list(readings.rglob("*.parquet"))) == 2  # the replaced version's file is kept for now
    assert vacuum_readings(kept) == 0
    erased = LakeResource(data_dir=str(tmp_path), retention_hours=0)
    assert vacuum_readings(erased) >= 1
    assert len(list(readings.rglob("*.parquet"))) == 1
    assert lake_table(tmp_path, "readings").height == 4
    assert vacuum_raw(erased) == 0  # nothing replaced there


def test_the_process_read_handle_follows_new_commits_and_a_table_written_anew(tmp_path):
    """Reads keep one handle per table and bring it up to date: a new commit is seen, and a
    table deleted and written again at the same path (same version number) is read anew."""
    import duckdb

    path, schema = tmp_path / "t", pl.Schema({"a": pl.Int64})
    assert tables.read_small(path, schema).columns == ["a"]  # never written: empty
    tables.append(path, pl.DataFrame({"a": [1]}))
    assert tables.read_small(path, schema)["a"].to_list() == [1]
    shutil.rmtree(path)
    tables.append(path, pl.DataFrame({"a": [2]}))  # version 0 again
    assert tables.read_small(path, schema)["a"].to_list() == [2]
    tables.append(path, pl.DataFrame({"a": [3]}))
    assert sorted(tables.read_small(path, schema)["a"]) == [2, 3]
    with duckdb.connect() as con:
        assert sorted(tables.relation(con, path).fetchall()) == [(2,), (3,)]
