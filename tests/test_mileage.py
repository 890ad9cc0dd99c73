"""Mileage verification for insurers: marts.mileage_verification, the macros
marts.verified_mileage(...) and marts.mileage_evidence(...), marts.odometer_anomalies, and
the `fleetlake mileage` statement.

Most tests build the mileage marts straight from hand-made odometer series in a DuckDB
file (no Dagster), so every number is known; one goes through the whole pipeline from
Smartcar deliveries, and the last ones measure the default simulated fleet against the
simulator's ground truth."""

import hashlib
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from conftest import build, mart, truth
from deliveries import delivery, odometer, write_landing

from assets.marts.mileage.assets import create_mileage_macros, monthly_verification_sql
from assets.marts.warehouse_io import replace_table, replace_table_from_frame
from assets.marts.mileage.odometer import ANOMALY_KINDS, assess_odometer
from pipelines.cli import main as fleetlake
from pipelines.reports.statements import (
    DIGEST_FORM, StatementError, canonical_evidence, check_statement, evidence_digest, mileage_statement,
)

VERIFICATION_COLUMNS = ["vehicle_id", "period_start", "period_end", "odometer_start_km", "odometer_end_km",
                        "distance_km", "evidence_readings", "coverage_pct", "anomalies", "status"]
SEP, OCT = (date(2026, 9, 1), date(2026, 9, 30)), (date(2026, 10, 1), date(2026, 10, 31))
T0 = datetime(2026, 9, 1, 0, 30, tzinfo=UTC)
EVERY = timedelta(hours=6)
STEPS = 244  # 6-hourly from 1 Sep 00:30 to 31 Oct 18:30


def series(vehicle: str, km_per_step: float = 10.0, *, edit=None, drop=lambda t: False) -> pl.DataFrame:
    """A 6-hourly odometer from 1 September to 31 October; `edit(t, km)` changes a value,
    `drop(t)` removes readings."""
    rows = []
    for i in range(STEPS):
        t = T0 + i * EVERY
        km = 10_000 + i * km_per_step
        if drop(t):
            continue
        rows.append({"vehicle_id": vehicle, "reading_time": t, "odometer_km": edit(t, km) if edit else km,
                     "event_id": f"{vehicle}-e{i}", "source_unit": "km", "delivered_at": t + timedelta(minutes=5),
                     "source_file": f"2026/{t:%m/%d}/deliveries.ndjson", "line_no": i + 1})
    return pl.DataFrame(rows, schema={"vehicle_id": pl.String, "reading_time": pl.Datetime("us", "UTC"),
                                      "odometer_km": pl.Float64, "event_id": pl.String, "source_unit": pl.String,
                                      "delivered_at": pl.Datetime("us", "UTC"), "source_file": pl.String,
                                      "line_no": pl.Int64})


def at(day: int, hour: float = 0.5, month: int = 9) -> datetime:
    return datetime(2026, month, day, tzinfo=UTC) + timedelta(hours=hour)


FLEET = {
    "clean": series("clean"),
    # the last reading of September is a spike: only October's first reading contradicts it
    "spike": series("spike", edit=lambda t, km: km + 5_000 if t == at(30, 18.5) else km),
    "rollback": series("rollback", edit=lambda t, km: km - 3_000 if t >= at(15) else km),
    "jump": series("jump", edit=lambda t, km: km + 3_000 if t >= at(15) else km),  # 3,010 km in 6 h
    # no reading from 28 Sep to 3 Oct (120 h) while the car drives on
    "gap": series("gap", drop=lambda t: at(28, 1) < t < at(3, 0, 10)),
    # 108 h without readings, parked: the odometer did not move across them
    "parked": series("parked", edit=lambda t, km: km - 180 if t >= T0 + 36 * EVERY else km,
                     drop=lambda t: T0 + 18 * EVERY < t < T0 + 36 * EVERY),
    "one_day": series("one_day", drop=lambda t: t.date() != date(2026, 9, 5)),
}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    """The mileage marts of FLEET (and of a vehicle with no odometer at all) in a warehouse file."""
    root = tmp_path_factory.mktemp("mileage")
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        con.execute("CREATE SCHEMA marts")
        con.execute("CREATE TABLE marts.vehicles AS SELECT unnest(?) AS vehicle_id", [[*FLEET, "silent"]])
        assessed = assess_odometer(pl.concat(FLEET.values())).readings
        replace_table_from_frame(con, "odometer_readings", assessed.sort("vehicle_id", "reading_time"))
        create_mileage_macros(con)
        replace_table(con, "mileage_verification", monthly_verification_sql())
    return root


@pytest.fixture
def con(warehouse):
    with duckdb.connect(str(warehouse / "warehouse.duckdb"), read_only=True) as connection:
        yield connection


def month(con, vehicle: str, period=SEP) -> dict:
    return con.sql("FROM marts.mileage_verification WHERE vehicle_id = ? AND period_start = ?",
                   params=[vehicle, period[0]]).pl().to_dicts()[0]


def verified(con, vehicle: str, start, end) -> dict:
    rows = con.sql("FROM marts.verified_mileage(?, ?, ?)", params=[vehicle, start, end]).pl().to_dicts()
    assert len(rows) == 1
    return rows[0]


def evidence(con, vehicle: str, start, end) -> pl.DataFrame:
    return con.sql("FROM marts.mileage_evidence(?, ?, ?)", params=[vehicle, start, end]).pl()


def clean_km(start: datetime, end: datetime) -> float:
    """What the clean series advances between two of its reading times."""
    return (end - start) / EVERY * 10.0


# --- distance ---------------------------------------------------------------------------

def test_clean_months_verify_and_their_distance_is_end_minus_start(con):
    for period in (SEP, OCT):
        row = month(con, "clean", period)
        assert row["status"] == "VERIFIED" and row["anomalies"] == [] and row["coverage_pct"] == 100.0
        assert row["distance_km"] == pytest.approx(row["odometer_end_km"] - row["odometer_start_km"])
    sep, oct_ = month(con, "clean", SEP), month(con, "clean", OCT)
    assert sep["odometer_start_km"] == 10_000  # no reading before: the first one of the month
    assert oct_["odometer_start_km"] == sep["odometer_end_km"]  # the odometer as of 1 October
    assert sep["distance_km"] + oct_["distance_km"] == pytest.approx(clean_km(T0, T0 + (STEPS - 1) * EVERY))


def test_a_spike_counts_for_nothing_even_when_its_contradiction_is_in_the_next_month(con):
    sep, oct_ = month(con, "spike", SEP), month(con, "spike", OCT)
    assert sep["anomalies"] == ["SPIKE"] and sep["status"] == "VERIFIED"
    assert oct_["anomalies"] == [] and oct_["status"] == "VERIFIED"
    assert sep["odometer_end_km"] == month(con, "clean", SEP)["odometer_end_km"] - 10  # the reading before it
    assert sep["distance_km"] + oct_["distance_km"] == pytest.approx(
        month(con, "clean", SEP)["distance_km"] + month(con, "clean", OCT)["distance_km"])


def test_a_rollback_neither_erases_nor_doubles_distance_and_needs_review(con):
    sep = month(con, "rollback", SEP)
    assert sep["anomalies"] == ["ROLLBACK"] and sep["status"] == "NEEDS_REVIEW"
    # the increases on either side: everything but the one step that went back
    assert sep["distance_km"] == pytest.approx(month(con, "clean", SEP)["distance_km"] - 10)
    oct_ = month(con, "rollback", OCT)
    assert oct_["status"] == "VERIFIED" and oct_["distance_km"] == month(con, "clean", OCT)["distance_km"]


def test_an_implausible_jump_is_not_counted_and_needs_review(con):
    sep = month(con, "jump", SEP)
    assert sep["anomalies"] == ["IMPLAUSIBLE_SPEED"] and sep["status"] == "NEEDS_REVIEW"
    assert sep["distance_km"] == pytest.approx(month(con, "clean", SEP)["distance_km"] - 10)


def test_a_gap_across_the_month_boundary_loses_no_distance_and_both_months_need_review(con):
    sep, oct_ = month(con, "gap", SEP), month(con, "gap", OCT)
    for row in (sep, oct_):
        assert row["anomalies"] == ["GAP"] and row["status"] == "NEEDS_REVIEW"
        assert "72 h" in row["status_reason"]
    assert sep["coverage_pct"] == pytest.approx(round(100 * 28 / 30, 1))
    assert sep["distance_km"] + oct_["distance_km"] == pytest.approx(
        month(con, "clean", SEP)["distance_km"] + month(con, "clean", OCT)["distance_km"])


def test_a_gap_while_parked_is_reported_but_the_month_still_verifies(con):
    sep = month(con, "parked", SEP)
    assert sep["anomalies"] == ["GAP"] and sep["status"] == "VERIFIED"
    readings = con.sql("FROM marts.odometer_readings WHERE vehicle_id = 'parked' AND gap_before").pl()
    assert readings.height == 1 and readings["odometer_km"][0] == readings["previous_odometer_km"][0]


def test_fewer_than_two_days_of_readings_is_insufficient_data(con):
    assert month(con, "one_day", SEP)["status"] == "INSUFFICIENT_DATA"
    october = month(con, "one_day", OCT)  # nothing in October; the odometer as of September stands
    assert (october["status"], october["distance_km"], october["coverage_pct"]) == ("INSUFFICIENT_DATA", 0, 0)
    assert october["odometer_start_km"] == october["odometer_end_km"] == month(con, "one_day", SEP)["odometer_end_km"]
    silent = month(con, "silent", SEP)
    assert silent["status"] == "INSUFFICIENT_DATA" and silent["odometer_start_km"] is None
    assert silent["evidence_readings"] == 0


# --- one definition for every period ------------------------------------------------------

def test_every_vehicle_has_every_month_with_the_contract_columns(con):
    table = con.sql("FROM marts.mileage_verification").pl()
    assert table.columns[:len(VERIFICATION_COLUMNS)] == VERIFICATION_COLUMNS
    assert table.height == (len(FLEET) + 1) * 2
    assert set(table["status"]) <= {"VERIFIED", "NEEDS_REVIEW", "INSUFFICIENT_DATA"}
    assert set(table["anomalies"].explode().drop_nulls()) == set(ANOMALY_KINDS)
    assert not {c for c in table.columns if "lat" in c or "lon" in c}


def test_the_macro_gives_the_table_row_for_a_calendar_month(con):
    table = con.sql("FROM marts.mileage_verification ORDER BY vehicle_id, period_start").pl()
    for row in table.iter_rows(named=True):
        assert verified(con, row["vehicle_id"], row["period_start"], row["period_end"]) == row


def test_periods_add_up_and_evidence_explains_every_figure(con):
    for vehicle in FLEET:
        whole = verified(con, vehicle, date(2026, 9, 1), date(2026, 10, 31))
        halves = [verified(con, vehicle, date(2026, 9, 1), date(2026, 9, 17)),
                  verified(con, vehicle, date(2026, 9, 18), date(2026, 10, 31))]
        assert sum(h["distance_km"] for h in halves) == pytest.approx(whole["distance_km"]), vehicle
        for row in (whole, *halves):
            readings = evidence(con, vehicle, row["period_start"], row["period_end"])
            assert readings.height == row["evidence_readings"], vehicle
            assert readings["credited_km"].sum() == pytest.approx(row["distance_km"]), vehicle
            assert readings["reading_time"].is_sorted()
            assert readings.filter(pl.col("role") == "opening").height <= 1
            assert readings.select("event_id", "source_unit", "delivered_at", "source_file").null_count().sum_horizontal()[0] == 0
    second_half = evidence(con, "clean", date(2026, 9, 18), date(2026, 9, 30))
    opening = second_half.row(0, named=True)
    assert (opening["role"], opening["reading_time"], opening["credited_km"]) == ("opening", at(17, 18.5), 0)


def test_the_macros_refuse_an_unknown_vehicle_and_a_period_that_ends_before_it_starts(con):
    for macro in ("verified_mileage", "mileage_evidence"):
        with pytest.raises(duckdb.Error, match="unknown vehicle: nobody"):
            con.sql(f"FROM marts.{macro}('nobody', DATE '2026-09-01', DATE '2026-09-30')").fetchall()
        with pytest.raises(duckdb.Error, match="starts after it ends"):
            con.sql(f"FROM marts.{macro}('clean', DATE '2026-09-30', DATE '2026-09-01')").fetchall()


def test_anomalies_mart_lists_each_anomaly_at_the_reading_that_shows_it(con):
    anomalies = assess_odometer(pl.concat(FLEET.values())).anomalies
    assert anomalies.select("vehicle_id", "kind").rows() == [
        ("gap", "GAP"), ("jump", "IMPLAUSIBLE_SPEED"), ("parked", "GAP"), ("rollback", "ROLLBACK"), ("spike", "SPIKE")]
    spike = anomalies.filter(pl.col("kind") == "SPIKE").row(0, named=True)
    assert (spike["detected_at"], spike["odometer_after_km"], spike["event_id"]) == (at(30, 18.5), 16_190, "spike-e119")
    gap = anomalies.filter(pl.col("vehicle_id") == "gap").row(0, named=True)
    assert gap["detected_at"] == at(3, 0.5, 10) and gap["detail"] == "no odometer reading for 120 h"


# --- statements ------------------------------------------------------------------------------

def test_statement_digest_is_the_documented_canonical_form(con):
    statement = mileage_statement(con, ["spike"], date(2026, 9, 30), date(2026, 10, 1))
    (vehicle,) = statement.vehicles
    assert [r["status"] for r in vehicle["evidence"]] == ["valid"] * 4 + ["spike"] + ["valid"] * 4
    assert vehicle["evidence"][0]["role"] == "opening"
    lines = [DIGEST_FORM] + [
        f"spike\t{r['reading_time']}\t{r['odometer_km']:.3f}\tkm\t{r['event_id']}" for r in vehicle["evidence"]]
    expected = "".join(line + "\n" for line in lines).encode()
    assert canonical_evidence("spike", vehicle["evidence"]) == expected
    assert vehicle["evidence_sha256"] == hashlib.sha256(expected).hexdigest()
    assert lines[5] == "spike\t2026-09-30T18:30:00.000000Z\t16190.000\tkm\tspike-e119"


def test_changing_one_reading_changes_the_digest(con):
    readings = mileage_statement(con, ["clean"], *SEP).vehicles[0]["evidence"]
    digest = evidence_digest("clean", readings)
    for field, value in [("odometer_km", readings[5]["odometer_km"] + 0.001), ("reading_time", "2026-09-02T06:30:01Z"),
                         ("event_id", "another"), ("source_unit", "mi")]:
        changed = [dict(r) for r in readings]
        changed[5][field] = value
        assert evidence_digest("clean", changed) != digest, field
    assert evidence_digest("clean", readings[:-1]) != digest
    assert evidence_digest("clean", list(reversed(readings))) == digest  # order is canonical, not given
    tab = [dict(r) for r in readings]
    tab[0]["event_id"] = "a\tb"
    assert b"a\\tb" in canonical_evidence("clean", tab)


def test_fleetlake_mileage_writes_json_and_csv_for_one_or_many_vehicles(warehouse, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FLEETLAKE_DATA_DIR", str(warehouse))
    stem = tmp_path / "statement"
    assert fleetlake(["--data-dir", str(warehouse), "mileage", "rollback", "--from", "2026-09-01",
                      "--to", "2026-09-30", "--output", str(stem)]) == 0
    document = json.loads(stem.with_suffix(".json").read_text())
    (vehicle,) = document["vehicles"]
    assert {k: vehicle[k] for k in ("vehicle_id", "status", "anomalies")} == {
        "vehicle_id": "rollback", "status": "NEEDS_REVIEW", "anomalies": ["ROLLBACK"]}
    assert len(vehicle["evidence"]) == vehicle["evidence_readings"] == 120
    assert check_statement(document) == []
    assert fleetlake(["check-statement", str(stem.with_suffix(".json"))]) == 0
    document["vehicles"][0]["evidence"][3]["odometer_km"] += 1  # someone edits a reading
    assert check_statement(document) == ["rollback"]
    altered = tmp_path / "altered.json"
    altered.write_text(json.dumps(document))
    assert fleetlake(["check-statement", str(altered)]) == 1
    assert "ALTERED: the evidence of rollback" in capsys.readouterr().err
    rows = pl.read_csv(stem.with_name("statement.csv"))
    assert rows.select("vehicle_id", "anomalies", "status", "evidence_sha256").row(0) == (
        "rollback", "ROLLBACK", "NEEDS_REVIEW", vehicle["evidence_sha256"])
    assert pl.read_csv(stem.with_name("statement.evidence.csv")).height == 120

    assert fleetlake(["--data-dir", str(warehouse), "mileage", "clean", "gap", "--from", "2026-09-01",
                      "--to", "2026-10-31"]) == 0
    written = warehouse / "statements" / "mileage-2026-09-01-2026-10-31-2-vehicles.json"
    assert [v["vehicle_id"] for v in json.loads(written.read_text())["vehicles"]] == ["clean", "gap"]
    assert fleetlake(["--data-dir", str(warehouse), "mileage", "--all", "--from", "2026-09-01", "--to", "2026-09-30"]) == 0
    everyone = json.loads((warehouse / "statements" / "mileage-2026-09-01-2026-09-30-all.json").read_text())
    assert len(everyone["vehicles"]) == len(FLEET) + 1
    assert "clean: 1190.0 km, VERIFIED" in capsys.readouterr().out


def test_fleetlake_mileage_explains_bad_input(warehouse, capsys, monkeypatch):
    monkeypatch.setenv("FLEETLAKE_DATA_DIR", str(warehouse))
    base = ["--data-dir", str(warehouse), "mileage"]
    assert fleetlake([*base, "nobody", "clean", "ghost", "--from", "2026-09-01", "--to", "2026-09-30"]) == 2
    assert "unknown vehicles: ghost, nobody" in capsys.readouterr().err
    assert fleetlake([*base, "clean", "--from", "2026-09-30", "--to", "2026-09-01"]) == 2
    assert "the period starts after it ends: 2026-09-30 > 2026-09-01" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        fleetlake([*base, "clean", "--from", "September", "--to", "2026-09-01"])
    assert exited.value.code == 2
    assert "not a date (YYYY-MM-DD): 'September'" in capsys.readouterr().err
    assert fleetlake(["--data-dir", str(warehouse / "nowhere"), "mileage", "clean", "--from", "2026-09-01",
                      "--to", "2026-09-30"]) == 2
    assert "run `fleetlake run` first" in capsys.readouterr().err
    with pytest.raises(StatementError, match="no vehicle"):
        with duckdb.connect(str(warehouse / "warehouse.duckdb"), read_only=True) as con:
            mileage_statement(con, [], *SEP)


# --- through the pipeline -----------------------------------------------------------------

def test_miles_unit_changes_duplicates_and_late_data_count_once_through_the_pipeline(data_dir):
    def reading(i: int, km: float, unit: str = "km", late_days: int = 0) -> dict:
        moment = datetime(2026, 9, 1, 6, tzinfo=UTC) + timedelta(hours=12 * i)
        value = round(km / 1.609344, 1) if unit == "mi" else km
        delivered = moment + timedelta(minutes=2, days=late_days)
        return delivery(f"e{i}", "car-1", [odometer(value, moment.isoformat().replace("+00:00", "Z"), unit)],
                        delivered_at=int(delivered.timestamp() * 1000))

    # 60 readings, twice a day, 25 km apart: miles until the 30th, then kilometres
    lines = [reading(i, 20_000 + 25 * i, "mi" if i < 30 else "km") for i in range(60)]
    write_landing(data_dir / "landing/a.ndjson", [line for i, line in enumerate(lines) if i != 40])
    write_landing(data_dir / "landing/b.ndjson", [lines[10], lines[45],  # duplicates, in another file
                                                  reading(40, 20_000 + 25 * 40, late_days=3)])  # late
    assert build(data_dir).ok
    (row,) = mart(data_dir, "mileage_verification").to_dicts()
    assert row["status"] == "VERIFIED" and row["anomalies"] == []
    assert row["distance_km"] == pytest.approx(59 * 25, abs=0.2)  # miles are read to 0.1 mi
    assert row["evidence_readings"] == 60
    assert mart(data_dir, "odometer_anomalies").height == 0
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        readings = evidence(con, "car-1", date(2026, 9, 1), date(2026, 9, 30))
    assert readings["source_unit"].value_counts().sort("source_unit").rows() == [("km", 30), ("mi", 30)]
    assert readings.filter(pl.col("event_id") == "e40")["source_file"].to_list() == ["b.ndjson"]
    assert readings["event_id"].n_unique() == 60


# --- against the simulator's ground truth -----------------------------------------------------

def _monthly_truth(fleet: Path) -> pl.DataFrame:
    return (truth(fleet, "daily_distance")
            .group_by("vehicle_id", period_start=pl.col("day").dt.truncate("1mo"))
            .agg(true_km=pl.col("distance_km").sum()))


def test_clean_vehicle_months_are_verified_within_half_a_percent_of_the_truth(default_fleet):
    clean = truth(default_fleet, "vehicles").filter("clean_odometer").select("vehicle_id")
    months = mart(default_fleet, "mileage_verification").join(clean, on="vehicle_id")
    true = _monthly_truth(default_fleet).join(clean, on="vehicle_id")
    key = ["vehicle_id", "period_start"]
    assert months.join(true, on=key, how="anti").is_empty() and true.join(months, on=key, how="anti").is_empty()
    compared = months.join(true, on=key).with_columns(error=(pl.col("distance_km") / pl.col("true_km") - 1).abs())
    assert compared.height >= 30 and compared["true_km"].null_count() == 0
    worst = compared["error"].max()
    print(f"\nworst clean vehicle-month error: {worst:.4%} over {compared.height} vehicle-months")
    assert worst < 0.005
    assert compared["status"].unique().to_list() == ["VERIFIED"]
    assert compared["anomalies"].list.len().max() == 0


def test_every_injected_rollback_and_spike_is_found_and_no_clean_vehicle_has_an_anomaly(default_fleet):
    faults = truth(default_fleet, "faults").filter(pl.col("kind").is_in(["ROLLBACK", "SPIKE", "GAP"]))
    found = mart(default_fleet, "odometer_anomalies")
    assert faults.filter(pl.col("kind") != "GAP").height >= 2
    for fault in faults.iter_rows(named=True):
        seen = found.filter((pl.col("vehicle_id") == fault["vehicle_id"]) & (pl.col("kind") == fault["kind"]))
        assert seen.height == 1, fault
        if fault["kind"] != "GAP":  # a gap is seen at the reading that ends it
            assert abs((seen["detected_at"][0] - fault["at"]).total_seconds()) < 1, fault
    print(f"\nanomalies found: {found.group_by('kind').len().sort('kind').rows()}; injected: "
          f"{faults.group_by('kind').len().sort('kind').rows()}")
    clean = set(truth(default_fleet, "vehicles").filter("clean_odometer")["vehicle_id"])
    assert not clean & set(found["vehicle_id"])
    unit_changed = set(truth(default_fleet, "faults").filter(pl.col("kind") == "UNIT_CHANGE")["vehicle_id"])
    assert not unit_changed & set(found["vehicle_id"])  # a unit change is no anomaly
    flagged = set(mart(default_fleet, "mileage_verification").filter(pl.col("status") != "VERIFIED")["vehicle_id"])
    assert set(faults.filter(pl.col("kind") == "ROLLBACK")["vehicle_id"]) <= flagged
    assert flagged <= set(faults.filter(pl.col("kind") != "SPIKE")["vehicle_id"])


# --- service records as independent evidence ------------------------------------------------

def test_a_service_odometer_far_from_the_cars_own_sends_the_month_to_review(tmp_path):
    from assets.marts.mileage.services import check_service_odometers, service_records

    # "tampered" reports a clean series, but its dealer wrote down 12,000 km more at a service on
    # 12 Sep: readings alone verify it; the record does not agree. "clean"'s record agrees (a
    # desk-rounded figure 8 km off), and "gap"'s falls in a 120 h stretch without readings.
    fleet = {"clean": FLEET["clean"], "gap": FLEET["gap"], "tampered": series("tampered")}
    assessed = assess_odometer(pl.concat(fleet.values())).readings.sort("vehicle_id", "reading_time")
    at_service = {"clean": (at(12, 9.0), 10_000 + (at(12, 9.0) - T0) / EVERY * 10 + 8),
                  "tampered": (at(12, 9.0), 22_000 + (at(12, 9.0) - T0) / EVERY * 10),
                  "gap": (at(30, 12.0), 17_000.0)}
    readings = pl.DataFrame(
        [{"vehicle_id": v, "metric": "service_odometer_km", "component": f"SVC-{v}", "value": km, "noted_at": when,
          "delivered_at": when + timedelta(days=d)} for v, (when, km) in at_service.items() for d in (1, 4)],
        schema={"vehicle_id": pl.String, "metric": pl.String, "component": pl.String, "value": pl.Float64,
                "noted_at": pl.Datetime("us", "UTC"), "delivered_at": pl.Datetime("us", "UTC")})
    records = service_records(readings)
    assert records.height == 3  # a record re-sent in a later delivery counts once
    checked = check_service_odometers(records, assessed)
    got = {r["vehicle_id"]: r for r in checked.iter_rows(named=True)}
    assert got["clean"]["odometer_check"] == "agrees" and got["clean"]["difference_km"] == pytest.approx(8.0)
    assert got["tampered"]["odometer_check"] == "disagrees"
    assert got["tampered"]["difference_km"] == pytest.approx(12_000.0)
    assert got["gap"]["odometer_check"] == "unverifiable" and got["gap"]["car_odometer_km"] is None

    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        con.execute("CREATE SCHEMA marts")
        con.execute("CREATE TABLE marts.vehicles AS SELECT unnest(?) AS vehicle_id", [list(fleet)])
        replace_table_from_frame(con, "odometer_readings", assessed)
        replace_table_from_frame(con, "service_records", checked)
        create_mileage_macros(con)
        replace_table(con, "mileage_verification", monthly_verification_sql())
        rows = {(r["vehicle_id"], r["period_start"]): r
                for r in con.sql("FROM marts.mileage_verification").pl().iter_rows(named=True)}
        macro = con.sql("FROM marts.verified_mileage('tampered', DATE '2026-09-10', DATE '2026-09-20')").pl()
    tampered, clean = rows["tampered", SEP[0]], rows["clean", SEP[0]]
    assert (tampered["status"], tampered["anomalies"]) == ("NEEDS_REVIEW", [])
    assert (tampered["service_records"], tampered["service_disagreements"]) == (1, 1)
    assert "service record's odometer disagrees" in tampered["status_reason"]
    assert tampered["distance_km"] == clean["distance_km"]  # the distance is still the odometer's
    assert (clean["status"], clean["service_records"], clean["service_disagreements"]) == ("VERIFIED", 1, 0)
    assert rows["tampered", OCT[0]]["status"] == "VERIFIED"  # the month without the record
    assert macro["status"].to_list() == ["NEEDS_REVIEW"] and macro["service_disagreements"].to_list() == [1]
    assert rows["gap", SEP[0]]["service_disagreements"] == 0
