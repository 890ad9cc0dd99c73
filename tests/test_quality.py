"""The expectation suites fail on the data they guard against (a check that cannot fail
guards nothing)."""

from datetime import UTC, date, datetime

import polars as pl

from assets.marts.mileage.odometer import TOLERANCE_KM
from assets.normalize import READINGS_SCHEMA
from assets.readings import with_reading_key
from quality.gx_validation import validate
from quality.suites import odometer_readings_suite, readings_ranges_suite, readings_schema_suite, with_metric_ranges

AT = datetime(2026, 9, 1, 8, tzinfo=UTC)


def reading(metric: str, value: float, event_id: str = "e", component: str | None = None) -> dict:
    return {"event_id": event_id, "signal_index": 0, "vehicle_id": "v", "reading_time": AT, "day": date(2026, 9, 1),
            "time_source": "oem", "metric": metric, "component": component, "value": value, "source_code": "x",
            "source_unit": "km", "noted_at": None, "delivered_at": AT, "landed_on": date(2026, 9, 1), "batch_id": "b"}


def failed(frame: pl.DataFrame, suite) -> list[str]:
    return [f"{o.expectation}:{o.column}" for o in validate(frame, suite) if not o.success]


def test_readings_suites_pass_good_readings_and_catch_bad_ones():
    good = with_reading_key(pl.DataFrame([reading("odometer_km", 10), reading("soc_pct", 50, "f")], schema=READINGS_SCHEMA))
    assert failed(good, readings_schema_suite()) == []
    assert failed(with_metric_ranges(good), readings_ranges_suite()) == []

    too_high = pl.DataFrame([reading("soc_pct", 150), reading("odometer_km", 10, "f")], schema=READINGS_SCHEMA)
    assert failed(with_metric_ranges(too_high), readings_ranges_suite()) == [
        "expect_column_pair_values_a_to_be_greater_than_b:range_max,value"]
    too_low = pl.DataFrame([reading("soc_pct", -1), reading("odometer_km", -5, "f")], schema=READINGS_SCHEMA)
    [outcome] = [o for o in validate(with_metric_ranges(too_low), readings_ranges_suite()) if not o.success]
    assert (outcome.column, outcome.unexpected) == ("value,range_min", 2)
    numeric_without_value = pl.DataFrame([reading("soc_pct", None), reading("odometer_km", 1, "f")],
                                         schema=READINGS_SCHEMA)
    assert failed(with_metric_ranges(numeric_without_value), readings_ranges_suite()) == [
        "expect_column_values_to_not_be_null:value"]
    repeated = with_reading_key(pl.DataFrame([reading("odometer_km", 10)] * 2, schema=READINGS_SCHEMA))
    assert failed(repeated, readings_schema_suite()) == ["expect_column_values_to_be_unique:reading_key"]
    unknown = with_reading_key(pl.DataFrame([reading("warp_factor", 9)], schema=READINGS_SCHEMA))
    assert "expect_column_values_to_be_in_set:metric" in failed(unknown, readings_schema_suite())


def test_odometer_suite_catches_a_valid_reading_below_the_one_before():
    frame = pl.DataFrame({
        "vehicle_id": ["v", "v", "v"], "reading_time": [AT.replace(hour=h) for h in (8, 9, 10)],
        "odometer_km": [100.0, 110.0, 90.0], "status": ["valid", "valid", "valid"],
        "credited_km": [0.0, 10.0, 0.0], "previous_odometer_km": [None, 100.0, 110.0],
    }).with_columns(step_km=pl.col("odometer_km") - pl.col("previous_odometer_km"))
    assert failed(frame, odometer_readings_suite(TOLERANCE_KM)) == ["expect_column_values_to_be_between:step_km"]
    flagged = frame.with_columns(status=pl.Series(["valid", "valid", "rollback"]))
    assert failed(flagged, odometer_readings_suite(TOLERANCE_KM)) == []


def test_a_day_larger_than_a_chunk_is_validated_in_parts_and_still_fails(monkeypatch):
    from assets.readings import ChunkedValidation

    monkeypatch.setattr(ChunkedValidation, "CHUNK_ROWS", 3)
    rows = [dict(reading("odometer_km", 10, f"e{n}"), vehicle_id=f"v{n}") for n in range(9)]
    rows += [dict(reading("soc_pct", 150, "e0"), vehicle_id="v0"), dict(reading("odometer_km", 10, "e5"), vehicle_id="v5")]
    with ChunkedValidation() as validation:
        validation.add(AT.date(), pl.DataFrame(rows, schema=READINGS_SCHEMA))
        validation.finish()
    day = AT.date().isoformat()
    failed_by_suite = {name: sorted(f"{o['expectation']}:{o['column']}" for o in outcomes[day] if not o["success"])
                       for name, outcomes in validation.outcomes.items()}
    assert failed_by_suite == {"readings_schema": ["expect_column_values_to_be_unique:reading_key"],
                               "readings_ranges": ["expect_column_pair_values_a_to_be_greater_than_b:range_max,value"]}
    assert len(validation.outcomes["readings_ranges"][day]) > len(readings_ranges_suite().expectations)  # in parts
