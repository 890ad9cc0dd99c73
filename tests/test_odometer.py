"""Distance from the odometer (assets/marts/mileage/odometer.py)."""

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from assets.marts.mileage.odometer import assess_odometer, daily_mileage, distinct_odometer_readings, odometer_anomalies

START = datetime(2026, 9, 1, 6, tzinfo=UTC)


def series(values, step_minutes=60, vehicle="v", start=START, times=None):
    times = times or [start + timedelta(minutes=step_minutes * i) for i in range(len(values))]
    return pl.DataFrame({"vehicle_id": [vehicle] * len(values), "reading_time": times, "odometer_km": values},
                        schema={"vehicle_id": pl.String, "reading_time": pl.Datetime("us", "UTC"),
                                "odometer_km": pl.Float64})


def total(values, **kw):
    return assess_odometer(series(values, **kw)).readings["credited_km"].sum()


def kinds(values, **kw):
    return assess_odometer(series(values, **kw)).anomalies["kind"].to_list()


def test_clean_series_counts_every_increase():
    assert total([100, 110, 130, 130, 175.5]) == pytest.approx(75.5)
    assert kinds([100, 110, 130, 130, 175.5]) == []


def test_a_spike_counts_for_nothing():
    values = [100, 110, 9_110, 120, 130]
    assert total(values) == pytest.approx(30)
    assert kinds(values) == ["SPIKE"]
    assert assess_odometer(series(values)).readings["status"].to_list()[2] == "spike"


def test_a_downward_spike_and_a_spike_in_first_place():
    assert total([100, 110, 5, 120]) == pytest.approx(20)
    assert total([50_000, 100, 110, 120]) == pytest.approx(20)
    assert kinds([50_000, 100, 110, 120]) == ["SPIKE"]


def test_rollback_counts_the_increases_on_either_side():
    values = [10_000, 10_050, 10_100, 5_100, 5_150, 5_200]
    assert total(values) == pytest.approx(200)
    assert kinds(values) == ["ROLLBACK"]


def test_jitter_is_neither_a_rollback_nor_counted_twice():
    assert total([100, 110, 109.6, 110, 120]) == pytest.approx(20)
    assert kinds([100, 110, 109.6, 110, 120]) == []


def test_implausible_speed_is_flagged_and_not_counted():
    values = [100, 110, 3_000, 3_010, 3_020]  # +2,890 km in an hour, and it stays
    assert kinds(values) == ["IMPLAUSIBLE_SPEED"]
    assert total(values) == pytest.approx(30)


def test_distance_across_a_gap_is_kept():
    times = [START, START + timedelta(hours=1), START + timedelta(hours=100), START + timedelta(hours=101)]
    assert total([100, 110, 400, 420], times=times) == pytest.approx(320)
    assert kinds([100, 110, 400, 420], times=times) == ["GAP"]


def test_a_spike_right_after_a_gap_is_still_a_spike():
    # 110 → 9,500 over 100 h is a plausible speed; the step past it (back to 420) is not.
    times = [START, START + timedelta(hours=1), START + timedelta(hours=101), START + timedelta(hours=102)]
    assessed = assess_odometer(series([100, 110, 9_500, 420], times=times))
    assert assessed.readings["status"].to_list() == ["valid", "valid", "spike", "valid"]
    assert assessed.anomalies["kind"].to_list() == ["SPIKE", "GAP"]
    assert assessed.readings["credited_km"].sum() == pytest.approx(320)


def test_each_reading_keeps_the_valid_reading_before_it():
    readings = assess_odometer(series([100, 110, 9_110, 120])).readings
    assert readings["previous_odometer_km"].to_list() == [None, 100, 110, 110]
    assert readings["previous_reading_time"].to_list() == [None, START, START + timedelta(hours=1),
                                                           START + timedelta(hours=1)]


def test_daily_mileage_credits_each_increase_to_the_day_it_ends():
    times = [START, START + timedelta(hours=10), START + timedelta(hours=20), START + timedelta(hours=30)]
    days = daily_mileage(assess_odometer(series([100, 150, 170, 200], times=times)).readings)
    assert days.select("day", "odometer_start_km", "odometer_end_km", "distance_km", "readings").rows() == [
        (START.date(), 100, 150, 50, 2), ((START + timedelta(days=1)).date(), 170, 200, 50, 2)]


def test_vehicles_are_assessed_independently():
    both = pl.concat([series([100, 110, 120], vehicle="a"), series([5, 6, 7], vehicle="b")])
    credited = assess_odometer(both).readings.group_by("vehicle_id").agg(pl.col("credited_km").sum()).sort("vehicle_id")
    assert credited.rows() == [("a", 20.0), ("b", 2.0)]


def test_odometer_readings_are_one_per_vehicle_and_time_the_first_delivered_with_its_sources():
    t = [START, START + timedelta(hours=1)]
    delivered = [START + timedelta(minutes=m) for m in (5, 50, 65, 70)]
    readings = pl.DataFrame({
        "event_id": ["e1", "e2", "e3", "e4"], "vehicle_id": ["v", "v", "v", "v"],
        "reading_time": [t[0], t[0], t[1], t[1]], "metric": ["odometer_km", "odometer_km", "odometer_km", "oil_life_pct"],
        "component": [None] * 4, "value": [100.0, 100.0, 112.5, 80.0], "source_unit": ["km", "mi", "km", "percent"],
        "delivered_at": delivered, "line_no": [1, 2, 3, 4], "unrelated": [0, 0, 0, 0]},
        schema_overrides={"reading_time": pl.Datetime("us", "UTC"), "delivered_at": pl.Datetime("us", "UTC"),
                          "component": pl.String})
    distinct = distinct_odometer_readings(readings)
    assert distinct.columns == ["vehicle_id", "reading_time", "odometer_km", "event_id", "source_unit",
                                "delivered_at", "line_no"]
    assert distinct.rows() == [("v", t[0], 100.0, "e1", "km", delivered[0], 1),
                               ("v", t[1], 112.5, "e3", "km", delivered[2], 3)]


def test_each_anomaly_explains_itself_in_figures():
    """The evidence an insurer reads: the size of the fall, the jump's distance, time and speed,
    and the length of a gap."""
    def details(values, **kw):
        return odometer_anomalies(assess_odometer(series(values, **kw)).readings).select("kind", "detail").rows()

    assert details([1000.0, 1010.0, 1020.0, 987.66, 990.0, 1000.0]) == [("ROLLBACK", "odometer fell by 32.3 km")]
    assert details([100, 110, 3_000.26, 3_010, 3_020], step_minutes=90) == \
        [("IMPLAUSIBLE_SPEED", "2890.3 km in 90 min (1927 km/h)")]
    gap = [START + timedelta(hours=h) for h in (0, 1, 2, 80, 81)]
    assert details([1000.0, 1010.0, 1020.0, 1100.0, 1110.0], times=gap) == [("GAP", "no odometer reading for 78 h")]


def test_a_first_reading_is_a_spike_only_when_two_readings_after_it_agree_against_it():
    assert kinds([5000.0, 1000.0]) == ["ROLLBACK"]  # one reading after it: nothing to tell which is wrong
    assert kinds([5000.0, 1000.0, 1010.0]) == ["SPIKE"]
