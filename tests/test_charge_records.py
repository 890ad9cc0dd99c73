"""The car's own charge records (`charge-chargerecords`) check and correct the sessions: the
record overlapping a plug-in is its, a SoC-based estimate gives way to the record's energy,
and the car's own energy counter is only compared."""

from datetime import timedelta

import polars as pl
import pytest
from test_charging import MONDAY, ac_session, frame, snap

from assets.marts.charging.assets import ChargingConfig, charging_marts
from assets.marts.charging.records import charge_records


def record_readings(vehicle: str, record: str, start, end, energy: float | None, delivered) -> list[dict]:
    """The readings a charge record becomes (assets/normalize.py), as delivered at `delivered`."""
    rows = [("charge_record_started_at", None, start), ("charge_record_ended_at", None, end)]
    rows += [("charge_record_energy_kwh", energy, start)] if energy is not None else []
    return [{"vehicle_id": vehicle, "metric": m, "component": record, "value": v, "noted_at": at,
             "delivered_at": delivered} for m, v, at in rows]


def records_frame(*rows: list[dict]) -> pl.DataFrame:
    return charge_records(pl.DataFrame([r for row in rows for r in row], schema={
        "vehicle_id": pl.String, "metric": pl.String, "component": pl.String, "value": pl.Float64,
        "noted_at": pl.Datetime("us", "UTC"), "delivered_at": pl.Datetime("us", "UTC")}))


def test_a_record_is_read_once_however_often_it_is_sent():
    start, end = MONDAY.replace(hour=19), MONDAY.replace(hour=23)
    records = records_frame(record_readings("v1", "R1", start, end, 21.0, end),
                            record_readings("v1", "R1", start, end, 99.0, end + timedelta(days=1)),  # re-sent later
                            record_readings("v1", "R2", start + timedelta(days=1), None, 5.0, end))  # no end yet
    assert records.select("record_id", "record_energy_kwh").rows() == [("R1", 21.0)]


def test_the_record_corrects_a_soc_estimate_and_checks_a_counter():
    start = MONDAY.replace(hour=19)
    without_counter = frame(snap(start - timedelta(minutes=5), "v1", nominal=64.0),  # nominal, not usable
                            *ac_session(start, counter=False, power=False, kw=7.0, soc0=30.0, limit=80.0, usable=60.0))
    with_counter = frame(*ac_session(start, vehicle="v2", counter=True, kw=7.0, soc0=30.0, limit=80.0, usable=60.0))
    readings = pl.concat([without_counter, with_counter])
    true_kwh = 0.5 * 60.0  # 30 % to 80 % of 60 kWh
    records = records_frame(
        record_readings("v1", "R1", start, start + timedelta(hours=5), true_kwh, start + timedelta(hours=6)),
        record_readings("v2", "R9", start, start + timedelta(hours=5), true_kwh * 1.02, start + timedelta(hours=6)),
        # a record of another plug-in, days later: no session of these
        record_readings("v1", "R2", start + timedelta(days=3), start + timedelta(days=3, hours=1), 4.0, start))
    before = charging_marts(readings, ChargingConfig())["charging_sessions"].sort("vehicle_id")
    after = charging_marts(readings, ChargingConfig(), records=records)["charging_sessions"].sort("vehicle_id")
    assert before["charge_record_id"].null_count() == 2

    estimated = after.row(0, named=True)  # v1: SoC × nominal capacity, corrected by the car's record
    assert before["energy_source"][0].startswith("soc_x_")
    assert estimated["charge_record_id"] == "R1" and estimated["energy_source"] == "charge_record"
    assert estimated["energy_added_kwh"] == pytest.approx(true_kwh)
    assert estimated["energy_low_kwh"] == estimated["energy_high_kwh"] == pytest.approx(true_kwh)
    assert estimated["energy_vs_record_pct"] == pytest.approx((before["energy_added_kwh"][0] / true_kwh - 1) * 100)
    assert estimated["grid_energy_kwh"] == pytest.approx(true_kwh / ChargingConfig().ac_efficiency)

    counted = after.row(1, named=True)  # v2: its counter stays, compared with its record
    assert counted["charge_record_id"] == "R9" and counted["energy_source"] == "energy_added"
    assert counted["energy_added_kwh"] == pytest.approx(before["energy_added_kwh"][1])
    assert counted["energy_vs_record_pct"] == pytest.approx((counted["energy_added_kwh"] / (true_kwh * 1.02) - 1) * 100)
