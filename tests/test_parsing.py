"""Landing lines → parsed deliveries, duplicates and quarantine (assets/parsing.py)."""

import polars as pl
import pytest
from deliveries import delivery, odometer, signal, write_landing

from assets.parsing import file_batch_id, parse_lines, read_landing_lines

AT = "2026-09-01T08:00:00.000Z"


def parse(tmp_path, lines, seen=None, name="a.ndjson"):
    path = write_landing(tmp_path / name, lines)
    return parse_lines(read_landing_lines(path, source_file=name, batch_id="b"), seen_event_ids=seen)


def test_every_line_has_exactly_one_outcome(tmp_path):
    lines = [delivery("e1", signals=[odometer(10, AT)]), delivery("e1"), "{not json", "", "[1, 2]", "42",
             {"eventType": "VEHICLE_STATE", "meta": {"deliveredAt": 1788249600000}},
             {"eventId": "x", "eventType": "SOMETHING_ELSE", "meta": {"deliveredAt": 1788249600000}},
             delivery("e2", vehicle_id=""), {"eventId": "e3", "eventType": "VEHICLE_STATE", "data": {"vehicle": {"id": "v"}},
              "meta": {"deliveredAt": 1788249600000}},
             delivery("e4", delivered_at="yesterday")]
    batch = parse(tmp_path, lines)
    assert batch.counts["lines"] == len(lines)
    assert batch.deliveries["event_id"].to_list() == ["e1"]
    assert batch.duplicates["line_no"].to_list() == [2]
    reasons = dict(zip(batch.quarantine["line_no"], batch.quarantine["reason"]))
    assert reasons == {3: "invalid_json", 4: "empty_line", 5: "not_an_object", 6: "not_an_object",
                       7: "missing_event_id", 8: "unknown_event_type", 9: "missing_vehicle_id",
                       10: "missing_signals", 11: "invalid_delivered_at"}
    assert batch.quarantine.filter(pl.col("line_no") == 3)["raw_text"].item() == "{not json"


def test_an_object_after_whitespace_is_a_delivery_and_each_line_keeps_its_own_outcome(tmp_path):
    import json
    # enough lines for DuckDB to split the scan between its threads
    lines = [(" \t " + json.dumps(delivery(f"e{i}", signals=[odometer(i, AT)])) if i % 3 else "[1]")
             for i in range(10_000)]
    path = tmp_path / "many.ndjson"
    path.write_text("\n".join(lines) + "\n")
    batch = parse_lines(read_landing_lines(path, source_file="many.ndjson", batch_id="b"))
    assert batch.deliveries["line_no"].to_list() == [i + 1 for i in range(10_000) if i % 3]
    assert batch.deliveries["event_id"].to_list() == [f"e{i}" for i in range(10_000) if i % 3]
    assert batch.quarantine["line_no"].to_list() == [i + 1 for i in range(10_000) if not i % 3]
    assert set(batch.quarantine["reason"]) == {"not_an_object"}
    assert batch.signals["event_id"].to_list() == batch.deliveries["event_id"].to_list()


def test_invalid_utf8_is_quarantined_with_its_text(tmp_path):
    path = tmp_path / "bad.ndjson"
    path.write_bytes(b'{"eventId": "caf\xe9"}\n')
    batch = parse_lines(read_landing_lines(path, source_file="bad.ndjson", batch_id="b"))
    assert batch.quarantine["reason"].to_list() == ["invalid_utf8"]
    assert batch.quarantine["raw_text"].item().startswith('{"eventId": "caf')


def test_event_seen_in_an_earlier_batch_is_a_duplicate(tmp_path):
    batch = parse(tmp_path, [delivery("old"), delivery("new")], seen=pl.Series(["old"]))
    assert batch.deliveries["event_id"].to_list() == ["new"]
    assert batch.duplicates["event_id"].to_list() == ["old"]


@pytest.mark.parametrize("delivered_at", [1788249600000, 1788249600, "2026-09-01T08:00:00Z"])
def test_delivered_at_in_milliseconds_seconds_or_iso(tmp_path, delivered_at):
    batch = parse(tmp_path, [delivery("e", delivered_at=delivered_at)])
    assert str(batch.deliveries["delivered_at"].item()) == "2026-09-01 08:00:00+00:00"


def test_trigger_as_object_or_string_and_verify_events(tmp_path):
    as_object = delivery("a")
    as_object["triggers"] = [{"type": "SIGNAL_UPDATED", "signal": {"code": "odometer-traveleddistance"}}]
    verify = {"eventId": "v", "eventType": "VERIFY", "data": {"challenge": "c"}, "meta": {"deliveredAt": 1788249600000}}
    batch = parse(tmp_path, [as_object, delivery("b"), verify])
    assert batch.deliveries["event_id"].to_list() == ["a", "b", "v"]
    assert batch.quarantine.height == 0


def test_signals_keep_body_status_and_the_contract_time(tmp_path):
    signals = [
        odometer(10, AT),
        signal("tractionbattery-stateofcharge", {"value": 50, "unit": "percent"}, None, retrieved="2026-09-01T07:00:00Z"),
        signal("charge-ischarging", {"value": False}, None),
        signal("location-preciselocation", None, None, status={"value": "ERROR", "error": {"type": "PERMISSION"}}),
    ]
    batch = parse(tmp_path, [delivery("e", signals=signals, delivered_at="2026-09-01T09:00:00Z")])
    s = batch.signals.sort("signal_index")
    assert s["time_source"].to_list() == ["oem", "retrieved", "delivered", "delivered"]
    assert [str(t) for t in s["reading_time"]] == ["2026-09-01 08:00:00+00:00", "2026-09-01 07:00:00+00:00",
                                                   "2026-09-01 09:00:00+00:00", "2026-09-01 09:00:00+00:00"]
    assert s["status"].to_list() == ["SUCCESS", "SUCCESS", "SUCCESS", "ERROR"]
    assert s["error_type"].to_list()[3] == "PERMISSION"
    assert batch.deliveries["signal_count"].item() == 4


def test_vehicle_errors_are_flattened(tmp_path):
    error = delivery("e", event_type="VEHICLE_ERROR", errors=[
        {"type": "CONNECTED_SERVICES_ACCOUNT", "code": "SUBSCRIPTION", "state": "ERROR",
         "resolution": {"type": "CONTACT_SUPPORT"}},
        {"type": "VEHICLE_STATE", "code": "ASLEEP", "state": "RESOLVED", "resolution": "RETRY_LATER"}])
    batch = parse(tmp_path, [error])
    assert batch.vehicle_errors.select("code", "state", "resolution").rows() == [
        ("SUBSCRIPTION", "ERROR", "CONTACT_SUPPORT"), ("ASLEEP", "RESOLVED", "RETRY_LATER")]


def test_gzip_and_crlf_lines(tmp_path):
    path = write_landing(tmp_path / "a.ndjson.gz", [delivery("a"), delivery("b")])
    assert read_landing_lines(path).height == 2
    crlf = tmp_path / "c.ndjson"
    crlf.write_bytes(b'{"a": 1}\r\n{"b": 2}\r\n')
    assert read_landing_lines(crlf)["text"].to_list() == ['{"a": 1}', '{"b": 2}']


def test_batch_id_changes_with_content_and_path():
    assert file_batch_id("a", "x") != file_batch_id("a", "y") != file_batch_id("b", "x")


def test_files_parsed_together_keep_their_own_batches_and_duplicates(tmp_path):
    first = write_landing(tmp_path / "1.ndjson", [delivery("a"), delivery("b")])
    second = write_landing(tmp_path / "2.ndjson", [delivery("b"), "{oops", delivery("c")])
    lines = pl.concat([read_landing_lines(first, source_file="1", batch_id="one"),
                       read_landing_lines(second, source_file="2", batch_id="two")])
    parsed = parse_lines(lines)
    one, two = parsed.of_batch("one"), parsed.of_batch("two")
    assert one.counts == {"lines": 2, "parsed": 2, "duplicates": 0, "quarantined": 0, "signals": 0, "vehicle_errors": 0}
    assert two.deliveries["event_id"].to_list() == ["c"]
    assert two.duplicates.select("event_id", "line_no").rows() == [("b", 1)]
    assert two.quarantine.select("line_no", "reason").rows() == [(2, "invalid_json")]
