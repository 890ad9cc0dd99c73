"""The reading partitions start at the first day the lake holds signals for, kept in a small
record under the lake's state; with no data dir named or no data yet, at 2020-01-01."""

from datetime import date

from storage.partitions import (FIRST_READING_DAY, first_day_record, partitions_start, record_reading_days,
                                recorded_first_day)


def test_the_record_keeps_the_earliest_day_seen(tmp_path):
    assert recorded_first_day(tmp_path) is None
    assert record_reading_days(tmp_path, []) is None and not first_day_record(tmp_path).exists()
    assert record_reading_days(tmp_path, [date(2026, 9, 3), date(2026, 9, 2)]) == date(2026, 9, 2)
    assert record_reading_days(tmp_path, [date(2026, 9, 5)]) == date(2026, 9, 2)  # later days change nothing
    assert record_reading_days(tmp_path, [date(2026, 8, 20)]) == date(2026, 8, 20)
    assert recorded_first_day(tmp_path) == date(2026, 8, 20)
    assert record_reading_days(tmp_path, [date(1969, 12, 31)]) == date(2026, 8, 20)  # never a partition
    assert first_day_record(tmp_path) == tmp_path / "lake" / "_state" / "first_reading_day.json"


def test_the_partitions_start_at_the_recorded_day_of_the_named_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("FLEETLAKE_DATA_DIR", raising=False)
    assert partitions_start() == FIRST_READING_DAY
    monkeypatch.setenv("FLEETLAKE_DATA_DIR", str(tmp_path))
    assert partitions_start() == FIRST_READING_DAY  # no data yet
    record_reading_days(tmp_path, [date(2026, 9, 1)])
    assert partitions_start() == date(2026, 9, 1)
    first_day_record(tmp_path).write_text("not json")
    assert partitions_start() == FIRST_READING_DAY  # a damaged record falls back
