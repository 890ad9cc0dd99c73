"""Hostile input, one piece at a time: faulty gzip, times and numbers no type can hold,
whitespace lines, file names that are not UTF-8, links and dot-files in landing, ids that
would be paths. The whole pipeline on the same input is in test_hostile_landing.py."""

import gzip
import hashlib
import json
import os
import struct
import zlib
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest
from deliveries import delivery as _delivery, odometer, signal

from assets.normalize import normalize_signals
from assets.parsing import file_batch_id, gunzip, landing_content, lines_frame, parse_lines
from pipelines.reports.statements import vehicle_label
from storage.files import OutsideRoot, inside
from storage.layout import landing_files, landing_name, read_landing_file
from storage.partitions import FIRST_READING_DAY, reading_day
from storage.resources import LakeResource

AT = "2026-09-01T08:00:00.000Z"
DELIVERED = 1788253200000  # 2026-09-01T09:00:00Z


def delivery(*args, delivered_at=DELIVERED, **kwargs) -> dict:
    return _delivery(*args, delivered_at=delivered_at, **kwargs)
LINES = [json.dumps(delivery(f"e{i}", signals=[odometer(1000 + i, AT)])).encode() for i in range(5)]


def flushed_gzip(lines: list[bytes]) -> tuple[bytes, list[int]]:
    """A gzip member of `lines`, flushed after each line, and the offset at which each line's
    compressed bytes end: a cut there keeps exactly the lines before it."""
    packer = zlib.compressobj(wbits=31)
    data, ends = b"", []
    for line in lines:
        data += packer.compress(line + b"\n") + packer.flush(zlib.Z_FULL_FLUSH)
        ends.append(len(data))
    return data + packer.flush(), ends


def test_a_gzip_cut_mid_stream_keeps_exactly_its_complete_lines():
    data, ends = flushed_gzip(LINES)
    content = landing_content("a.ndjson.gz", data[:ends[2] + 3])  # three lines, then a few bytes of the fourth
    assert (content.fault, content.lines) == ("truncated_gzip", LINES[:3])
    assert content.detail == "gzip member 1 is cut short; 3 complete lines kept, 0 bytes of a partial line dropped"


def test_a_cut_inside_a_line_drops_only_that_partial_line():
    text = b"".join(line + b"\n" for line in LINES)
    data = gzip.compress(text, mtime=0)
    four_lines = len(text) - len(LINES[-1]) - 1
    # A cut where the text decompressed so far ends inside the last line.
    cut = next(n for n in range(len(data))
               if four_lines < len(zlib.decompressobj(wbits=31).decompress(data[:n])) < len(text))
    content = landing_content("a.ndjson.gz", data[:cut])
    assert content.fault == "truncated_gzip"
    assert content.lines == LINES[:4]


@pytest.mark.parametrize("name, make, fault, kept", [
    ("cut in the trailer", lambda z: z[:-4], "truncated_gzip", 5),
    ("empty file", lambda z: b"", "truncated_gzip", 0),
    ("header only", lambda z: z[:10], "truncated_gzip", 0),
    ("random bytes", lambda z: bytes(range(7, 250)), "corrupt_gzip", 0),
    ("gzip header then junk", lambda z: z[:10] + b"\xff" * 64, "corrupt_gzip", 0),
    ("checksum does not match", lambda z: z[:-8] + struct.pack("<I", zlib.crc32(b"other")) + z[-4:], "corrupt_gzip", 0),
    ("length does not match", lambda z: z[:-4] + struct.pack("<I", 1), "corrupt_gzip", 0),
    ("a good member then a bad one", lambda z: z + b"\x1f\x8b\x08\x00" + b"\xff" * 20, "corrupt_gzip", 5),
    ("a good member then junk", lambda z: z + b"trailing junk", "corrupt_gzip", 5),
    ("a good member then a cut one", lambda z: z + z[:30], "truncated_gzip", 5),
    ("zero padding after the last member", lambda z: z + b"\0" * 512, None, 5),
    ("two good members", lambda z: z + z, None, 10),
])
def test_every_gzip_fault_is_named_and_keeps_only_what_can_be_trusted(name, make, fault, kept):
    whole = gzip.compress(b"".join(line + b"\n" for line in LINES), mtime=0)
    content = landing_content("a.ndjson.gz", make(whole))
    assert content.fault == fault, name
    assert content.lines == (LINES * 2)[:kept], name
    assert (content.detail is None) == (fault is None)


def test_gzip_bytes_in_a_plain_ndjson_file_are_lines_that_fail_on_their_own():
    content = landing_content("a.ndjson", gzip.compress(b"{}\n", mtime=0))
    assert content.fault is None and len(content.lines) >= 1
    assert gunzip(b"not gzip")[1] == "corrupt_gzip"


def judge(lines: list[str | bytes]):
    raw = [line if isinstance(line, bytes) else line.encode() for line in lines]
    return parse_lines(lines_frame(raw, source_file="a.ndjson", batch_id="b"))


# Every way a JSON time can be out of what a timestamp holds.
OUT_OF_RANGE = ["1e20", "1e300", "-1e20", "-1e300", "NaN", "Infinity", "-Infinity", "1e400", "-1e400",
                "18446744073709551615", "-9223372036854775808", "-62135596801000", "253402300800000",
                '"infinity"', '"-infinity"', '"20000-01-01T00:00:00Z"', '"294247-01-10T04:00:54Z"', '""',
                "true", "[1]", '{"seconds": 1}']


@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_a_delivery_time_no_timestamp_can_hold_quarantines_the_line(value):
    line = json.dumps(delivery("e1", signals=[odometer(10, AT)])).replace(str(DELIVERED), value)
    assert value in line
    batch = judge([line, json.dumps(delivery("ok", signals=[odometer(10, AT)]))])
    assert batch.quarantine.select("line_no", "reason").rows() == [(1, "invalid_delivered_at")]
    assert batch.deliveries["event_id"].to_list() == ["ok"]


@pytest.mark.parametrize("field", ["oemUpdatedAt", "retrievedAt"])
@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_a_signal_time_no_timestamp_can_hold_quarantines_the_signal(field, value):
    meta = json.dumps({field: "PLACEHOLDER"}).replace('"PLACEHOLDER"', value)
    sig = signal("odometer-traveleddistance", {"value": 10, "unit": "km"}, at=None)
    line = json.dumps(delivery("e1", signals=[sig])).replace('"meta": {}', f'"meta": {meta}')
    batch = judge([line])
    assert batch.deliveries["event_id"].to_list() == ["e1"]
    assert batch.signals["reading_time"].to_list() == [None]
    held = normalize_signals(batch.signals).quarantine
    assert held.select("event_id", "reason").rows() == [("e1", "invalid_timestamp")]


@pytest.mark.parametrize("value, when", [
    ("0", datetime(1970, 1, 1, tzinfo=UTC)), ("-94694400", datetime(1967, 1, 1, tzinfo=UTC)),
    ("99999999999", datetime(5138, 11, 16, 9, 46, 39, tzinfo=UTC)),  # the largest number read as seconds
    ("253402300799000", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),  # the latest, in milliseconds
    ('"0001-01-01T00:00:00Z"', datetime(1, 1, 1, tzinfo=UTC)), ('"epoch"', datetime(1970, 1, 1, tzinfo=UTC)),
])
def test_the_extreme_times_a_timestamp_can_hold_are_read(value, when):
    line = json.dumps(delivery("e1")).replace(str(DELIVERED), value)
    assert judge([line]).deliveries["delivered_at"].to_list() == [when]


@pytest.mark.parametrize("body, reason", [
    ({"value": "1e400", "unit": "km"}, "wrong_type"),
    ({"value": 1e300, "unit": "km"}, "out_of_range"),
    ({"value": 1.7e308, "unit": "miles"}, "out_of_range"),  # overflows to infinity when converted
])
def test_numeric_values_no_float_can_hold_are_quarantined(body, reason):
    batch = judge([json.dumps(delivery("e1", signals=[signal("odometer-traveleddistance", body, AT)]))])
    assert normalize_signals(batch.signals).quarantine["reason"].to_list() == [reason]


@pytest.mark.parametrize("raw_value, reason", [
    ("1e400", "wrong_type"), ("-1e400", "wrong_type"), ("NaN", "wrong_type"), ("Infinity", "wrong_type"),
    ("1e300", "out_of_range"), ("18446744073709551615", "out_of_range"),
])
def test_raw_json_numbers_out_of_every_range_are_quarantined(raw_value, reason):
    line = json.dumps(delivery("e1", signals=[signal("charge-wattage", {"value": 0, "unit": "W"}, AT),
                                              signal("wheel-tires", {"values": [
                                                  {"row": 0, "column": 0, "tirePressure": 0}], "unit": "kPa"}, AT)]))
    line = line.replace('"value": 0', f'"value": {raw_value}').replace('"tirePressure": 0', f'"tirePressure": {raw_value}')
    held = normalize_signals(judge([line]).signals).quarantine.sort("signal_index")
    assert held["reason"].to_list() == [reason, reason]


def test_tyre_positions_and_trouble_code_times_no_type_can_hold_never_raise():
    tires = {"values": [{"row": 99999999999, "column": 0, "tirePressure": 200},
                        {"row": 0, "column": -99999999999, "tirePressure": 200}], "unit": "kPa"}
    codes = {"values": [{"code": "P0420", "timestamp": "infinity"}, {"code": "P0171", "timestamp": 1e300}]}
    batch = judge([json.dumps(delivery("e1", signals=[signal("wheel-tires", tires, AT),
                                                      signal("diagnostics-dtclist", codes, AT)]))])
    normalized = normalize_signals(batch.signals)
    assert normalized.quarantine.select("code", "reason").rows() == [("wheel-tires", "malformed_body")]
    codes_read = normalized.readings.filter(pl.col("metric") == "dtc_code").sort("component")
    assert codes_read.select("component", "noted_at").rows() == [("P0171", None), ("P0420", None)]


@pytest.mark.parametrize("text", [" ", "\t", " \t ", "\t\r", "\x0b\x0c", "   \t   \t"])
def test_a_whitespace_only_line_is_an_empty_line(text):
    batch = judge([text.encode()])
    assert batch.quarantine["reason"].to_list() == ["empty_line"]


def ingested(day: str, delivered: datetime, reading: datetime | None) -> pl.DataFrame:
    return pl.DataFrame({"reading_time": [reading], "delivered_at": [delivered],
                         "ingested_at": [datetime.fromisoformat(day).replace(tzinfo=UTC)]},
                        schema={c: pl.Datetime("us", "UTC") for c in ("reading_time", "delivered_at", "ingested_at")})


@pytest.mark.parametrize("delivered, reading, day", [
    (datetime(9999, 6, 1, tzinfo=UTC), datetime(9999, 6, 1, tzinfo=UTC), date(2026, 12, 1)),  # after its ingest
    (datetime(1970, 1, 1, tzinfo=UTC), datetime(1970, 1, 1, tzinfo=UTC), FIRST_READING_DAY),
    (datetime(1967, 1, 1, tzinfo=UTC), None, FIRST_READING_DAY),
    (datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC), FIRST_READING_DAY),
    (datetime(2026, 12, 4, tzinfo=UTC), datetime(2026, 12, 4, tzinfo=UTC), date(2026, 12, 1)),  # 3 days ahead
    (datetime(9999, 6, 1, tzinfo=UTC), datetime(2026, 9, 1, 8, tzinfo=UTC), date(2026, 9, 1)),  # a good reading
    (datetime(2026, 12, 1, 23, 58, tzinfo=UTC), datetime(2026, 12, 2, 0, 3, tzinfo=UTC), date(2026, 12, 2)),
])
def test_every_signal_is_filed_under_a_day_between_the_first_partition_and_the_day_after_its_ingest(
        delivered, reading, day):
    frame = ingested("2026-12-01T23:59:00", delivered, reading)
    assert frame.select(reading_day()).item() == day


def test_out_of_partition_times_are_quarantined_as_implausible_in_the_day_they_are_filed_under():
    lines = [delivery("future", signals=[odometer(1, None)], delivered_at="9999-06-01T00:00:00Z"),
             delivery("epoch", signals=[odometer(1, None)], delivered_at=0),
             delivery("sixties", signals=[odometer(1, None)], delivered_at=-94694400)]
    signals = judge([json.dumps(line) for line in lines]).signals.with_columns(
        ingested_at=pl.lit(datetime(2026, 12, 1, tzinfo=UTC), pl.Datetime("us", "UTC")))
    held = normalize_signals(signals).quarantine.sort("event_id")
    assert held.select("event_id", "reason", "day").rows() == [
        ("epoch", "implausible_timestamp", FIRST_READING_DAY),
        ("future", "implausible_timestamp", date(2026, 12, 1)),
        ("sixties", "implausible_timestamp", FIRST_READING_DAY),
    ]


def test_a_file_name_that_is_not_utf8_has_a_batch_id_and_a_printable_name():
    name = os.fsdecode(b"2026/caf\xe9.ndjson")
    assert landing_name(name) == "2026/caf\\xe9.ndjson"
    assert file_batch_id(name, "x") != file_batch_id("2026/caf\\xe9.ndjson", "x")
    # A UTF-8 name keeps the batch id it always had, so lakes ingested before see no new batch.
    assert file_batch_id("2026/a.ndjson", "x") == hashlib.sha256("2026/a.ndjson\nx".encode()).hexdigest()[:20]


def test_landing_files_skips_links_dot_files_dot_folders_and_what_is_not_a_regular_file(tmp_path):
    landing, outside = tmp_path / "landing", tmp_path / "outside"
    (landing / "2026" / ".staging").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.ndjson").write_text("{}\n")
    for name in ["a.ndjson", "2026/b.ndjson.gz", "2026/.in-flight.ndjson", ".hidden.ndjson",
                 "2026/.staging/c.ndjson", "notes.txt", "d.ndjson.tmp", "e.ndjson.gz.part"]:
        (landing / name).write_text("{}\n")
    (landing / "link.ndjson").symlink_to(outside / "secret.ndjson")
    (landing / "inner-link.ndjson").symlink_to(landing / "a.ndjson")  # the target is read once, as itself
    (landing / "linked-folder").symlink_to(outside, target_is_directory=True)
    (landing / "dangling.ndjson").symlink_to(tmp_path / "nothing.ndjson")
    os.mkfifo(landing / "fifo.ndjson")  # opening a fifo would block the run
    (landing / "folder.ndjson").mkdir()
    (landing / os.fsdecode(b"caf\xe9.ndjson")).write_text("{}\n")
    found = [landing_name(p.relative_to(landing).as_posix()) for p in landing_files(landing)]
    assert found == ["2026/b.ndjson.gz", "a.ndjson", "caf\\xe9.ndjson"]


def test_a_landing_file_swapped_for_a_link_after_it_was_listed_is_not_read(tmp_path):
    (tmp_path / "landing").mkdir()
    path = tmp_path / "landing" / "a.ndjson"
    path.write_text("{}\n")
    listed = path.lstat()
    assert read_landing_file(path, listed) == b"{}\n"
    (tmp_path / "secret").write_text("root:x:0:0\n")
    path.unlink()
    path.symlink_to(tmp_path / "secret")
    assert read_landing_file(path, listed) is None
    path.unlink()
    assert read_landing_file(path, listed) is None


@pytest.mark.parametrize("vehicle_id", ["../../../../escape", "/etc/passwd", "a" * 10_000, "..", ".", "",
                                        "a/b", "a\\b", "a\0b", "nul\n", "vehicle.0123", "ünïcode", "a.b",
                                        "a" * 65, os.fsdecode(b"\xff\xfe")])
def test_a_vehicle_id_that_is_not_plain_becomes_a_digest_never_a_path(vehicle_id, tmp_path):
    label = vehicle_label(vehicle_id)
    assert label.startswith("vehicle.") and len(label) == len("vehicle.") + 20
    assert label.removeprefix("vehicle.").isalnum()
    statements = tmp_path / "statements"
    assert inside(statements, statements / f"mileage-2026-09-01-2026-09-30-{label}")


@pytest.mark.parametrize("vehicle_id", ["36ab27d0-fd9d-4455-823a-ce30af709ffc", "car-1", "VEH_2", "a" * 64])
def test_a_plain_vehicle_id_names_its_statement_as_it_is(vehicle_id):
    assert vehicle_label(vehicle_id) == vehicle_id
    assert vehicle_label(vehicle_id) != vehicle_label("vehicle." + vehicle_id)


@pytest.mark.parametrize("parts", [("..", "escape"), ("raw", "..", "..", "..", "x"), ("/etc", "passwd")])
def test_no_lake_path_resolves_outside_the_lake(tmp_path, parts):
    lake = LakeResource(data_dir=str(tmp_path))
    with pytest.raises(OutsideRoot):
        lake.path(*parts)
    assert lake.path("raw", "signals", "day=2026-09-01", "x.parquet") == tmp_path / "lake/raw/signals/day=2026-09-01/x.parquet"


def test_a_link_inside_the_lake_pointing_out_of_it_is_refused(tmp_path):
    (tmp_path / "lake").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "lake" / "raw").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(OutsideRoot):
        LakeResource(data_dir=str(tmp_path)).path("raw", "deliveries", "b.parquet")
    assert not list(Path(tmp_path / "elsewhere").iterdir())


def test_a_name_that_is_not_utf8_and_its_printable_twin_are_two_batches(tmp_path):
    from assets.raw import ingest_landing

    landing = tmp_path / "landing"
    landing.mkdir()
    line = json.dumps(delivery("e1", signals=[odometer(10, AT)])).encode() + b"\n"
    with open(os.path.join(os.fsencode(landing), b"caf\xe9.ndjson"), "wb") as f:
        f.write(line)
    (landing / "caf\\xe9.ndjson").write_bytes(line)  # a backslash, an x, an e and a 9
    manifests = ingest_landing(LakeResource(data_dir=str(tmp_path)))
    assert [(m["source_file"], m["parsed"], m["duplicates"]) for m in manifests] == [
        ("caf\\xe9.ndjson", 1, 0), ("caf\\xe9.ndjson", 0, 1)]
    assert manifests[0]["batch_id"] != manifests[1]["batch_id"]
    assert ingest_landing(LakeResource(data_dir=str(tmp_path))) == []  # both seen now
