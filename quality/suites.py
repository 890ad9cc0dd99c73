"""Expectation suites as code: what must hold of the readings and the marts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from assets.marts.maintenance.rules import COMPONENTS, URGENCIES
from assets.normalize import READINGS_SCHEMA
from assets.signal_catalog import METRIC_RANGES, METRIC_UNITS, TEXT_METRICS
from quality.gx_validation import gx_context

if TYPE_CHECKING:
    import great_expectations as gx


class _Expectations:
    """`great_expectations.expectations`, imported on first use (see `gx_context`)."""

    def __getattr__(self, name: str):
        gx_context()
        import great_expectations.expectations as expectations

        return getattr(expectations, name)


gxe = _Expectations()


def _suite(name: str) -> gx.ExpectationSuite:
    gx_context()  # GX builds suites against the active context (and is imported on first use)
    import great_expectations as gx

    return gx.ExpectationSuite(name=name)


def readings_schema_suite() -> gx.ExpectationSuite:
    """Critical: the columns of the contract, keys present, metrics known, one row per value."""
    suite = _suite("readings_schema")
    suite.add_expectation(gxe.ExpectTableColumnsToMatchSet(column_set=list(READINGS_SCHEMA) + ["reading_key"], exact_match=True))
    for column in ("event_id", "vehicle_id", "reading_time", "day", "metric", "signal_index"):
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=column))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="metric", value_set=sorted(METRIC_UNITS)))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="time_source", value_set=["oem", "retrieved", "delivered"]))
    suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column="reading_key"))
    return suite


def readings_ranges_suite() -> gx.ExpectationSuite:
    """Critical: every value inside its metric's physical range, in SI units. Validated on
    `with_metric_ranges(readings)`: two expectations against each row's bounds, rather than
    one per metric, each of which would filter the whole batch again."""
    suite = _suite("readings_ranges")
    suite.add_expectation(gxe.ExpectColumnPairValuesAToBeGreaterThanB(
        column_A="value", column_B="range_min", or_equal=True, ignore_row_if="either_value_is_missing"))
    suite.add_expectation(gxe.ExpectColumnPairValuesAToBeGreaterThanB(
        column_A="range_max", column_B="value", or_equal=True, ignore_row_if="either_value_is_missing"))
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(
        column="value", row_condition=f"metric not in {sorted(TEXT_METRICS)}", condition_parser="pandas"))
    return suite


_RANGES = pl.DataFrame([(metric, float(low), float(high)) for metric, (low, high) in METRIC_RANGES.items()],
                       schema={"metric": pl.String, "range_min": pl.Float64, "range_max": pl.Float64}, orient="row")


def with_metric_ranges(readings: pl.DataFrame) -> pl.DataFrame:
    """What `readings_ranges_suite` validates: each reading's metric, value and its metric's
    range (null for a metric without one)."""
    return readings.select("metric", "value").join(_RANGES, on="metric", how="left", maintain_order="left")


def daily_mileage_suite() -> gx.ExpectationSuite:
    suite = _suite("daily_mileage")
    suite.add_expectation(gxe.ExpectCompoundColumnsToBeUnique(column_list=["vehicle_id", "day"]))
    # No car drives more than 24 h at 125 km/h on average in a day.
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="distance_km", min_value=0, max_value=3_000))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="odometer_start_km", min_value=0))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="readings", min_value=1))
    return suite


def charging_sessions_suite() -> gx.ExpectationSuite:
    suite = _suite("charging_sessions")
    suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column="session_id"))
    for column in ("session_id", "vehicle_id", "started_at", "ended_at", "energy_added_kwh", "location_type"):
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=column))
    suite.add_expectation(gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="ended_at", column_B="started_at", or_equal=True))
    suite.add_expectation(gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="started_at", column_B="plugged_in_at", or_equal=True))
    suite.add_expectation(gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="unplugged_at", column_B="ended_at", or_equal=True))
    for column in ("soc_start_pct", "soc_end_pct"):
        suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column=column, min_value=0, max_value=100))
    # the largest packs on the road hold about 200 kWh; the fastest chargers deliver 350 kW
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="energy_added_kwh", min_value=0, max_value=250))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="avg_power_kw", min_value=0, max_value=400))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="location_type", value_set=["home", "work", "public", "unknown"]))
    return suite


def battery_health_suite() -> gx.ExpectationSuite:
    suite = _suite("battery_health")
    suite.add_expectation(gxe.ExpectCompoundColumnsToBeUnique(column_list=["vehicle_id", "month"]))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="estimated_capacity_kwh", min_value=1, max_value=250))
    # a pack below 50 % of its nominal capacity is scrap; above 110 % the estimate is wrong
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="state_of_health_pct", min_value=50, max_value=110))
    return suite


def odometer_readings_suite(tolerance_km: float) -> gx.ExpectationSuite:
    """Critical for every mileage mart: the odometer is non-negative and does not decrease
    outside anomalies (a valid reading is never below the valid one before it by more
    than the odometer's resolution), and the credit is never negative."""
    suite = _suite("odometer_readings")
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="odometer_km", min_value=0))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(
        column="status", value_set=["valid", "spike", "rollback", "implausible_speed"]))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(
        column="step_km", min_value=-tolerance_km, row_condition='status=="valid"', condition_parser="pandas"))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="credited_km", min_value=0))
    suite.add_expectation(gxe.ExpectCompoundColumnsToBeUnique(column_list=["vehicle_id", "reading_time"]))
    return suite


def mileage_verification_suite() -> gx.ExpectationSuite:
    suite = _suite("mileage_verification")
    suite.add_expectation(gxe.ExpectCompoundColumnsToBeUnique(column_list=["vehicle_id", "period_start"]))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(
        column="status", value_set=["VERIFIED", "NEEDS_REVIEW", "INSUFFICIENT_DATA"]))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="coverage_pct", min_value=0, max_value=100))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="distance_km", min_value=0))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="evidence_readings", min_value=0))
    return suite


def maintenance_forecast_suite():
    suite = _suite("maintenance_forecast")
    suite.add_expectation(gxe.ExpectCompoundColumnsToBeUnique(column_list=["vehicle_id", "component"]))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="component", value_set=COMPONENTS))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="urgency", value_set=URGENCIES))
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="as_of"))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="evidence_readings", min_value=0))
    return suite
