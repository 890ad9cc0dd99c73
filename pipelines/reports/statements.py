"""Mileage statements for insurers: the verified mileage of one or more vehicles over a
policy period, with the odometer readings behind it, written as JSON and CSV.

Each vehicle's statement carries `evidence_sha256`, a SHA-256 digest over its evidence
readings in a canonical form (`canonical_evidence`), so that anyone holding the same
readings can recompute it and see that the statement rests on exactly those readings.

Canonical form, version 1 (UTF-8 bytes):

    fleetlake-odometer-evidence/1 LF
    then one line per evidence reading, ordered by reading_time then event_id:
    vehicle_id TAB reading_time TAB odometer_km TAB source_unit TAB event_id LF

- reading_time: UTC, `YYYY-MM-DDTHH:MM:SS.ffffffZ` (always six fractional digits);
- odometer_km: the value in km with exactly three decimals (as printf `%.3f`; the
  statement's `odometer_km` values are already rounded to three decimals);
- source_unit, event_id: as delivered, empty when missing;
- in any field, a backslash is written `\\`, a tab `\t`, a line feed `\n`, a carriage
  return `\r`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

from storage.errors import UserError

DIGEST_FORM = "fleetlake-odometer-evidence/1"
VERIFICATION_COLUMNS = [
    "vehicle_id", "period_start", "period_end", "odometer_start_km", "odometer_end_km", "distance_km",
    "evidence_readings", "coverage_pct", "anomalies", "status", "status_reason", "odometer_start_at",
    "odometer_end_at",
]
EVIDENCE_COLUMNS = [
    "reading_time", "odometer_km", "status", "role", "credited_km", "event_id", "source_unit", "delivered_at",
    "source_file", "line_no",
]
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


# A vehicle id that can name a file as it is: short, plain letters, digits, '-' and '_'.
_PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def vehicle_label(vehicle_id: str) -> str:
    """A file-name part for a vehicle: the id itself when it is plain (`_PLAIN_ID`, as
    Smartcar's UUIDs are), else `vehicle.` and a digest of it. The dot keeps the two kinds
    apart (a plain id has none), so no id can take another's name, and no id, however
    long or made of `../`, becomes a path."""
    if _PLAIN_ID.fullmatch(vehicle_id):
        return vehicle_id
    return "vehicle." + hashlib.sha256(vehicle_id.encode("utf-8", "surrogatepass")).hexdigest()[:20]


class StatementError(UserError):
    """Input a statement cannot be made for (the message says why)."""


def _utc(moment: datetime | str) -> str:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_evidence(vehicle_id: str, readings: list[dict]) -> bytes:
    """The bytes the evidence digest is computed over (see the module's docstring)."""
    def field(value) -> str:
        return "" if value is None else str(value).translate(_ESCAPES)

    ordered = sorted(readings, key=lambda r: (_utc(r["reading_time"]), r.get("event_id") or ""))
    lines = [DIGEST_FORM] + ["\t".join([
        field(vehicle_id), _utc(r["reading_time"]), f"{r['odometer_km']:.3f}", field(r.get("source_unit")),
        field(r.get("event_id"))]) for r in ordered]
    return "".join(line + "\n" for line in lines).encode("utf-8")


def evidence_digest(vehicle_id: str, readings: list[dict]) -> str:
    return hashlib.sha256(canonical_evidence(vehicle_id, readings)).hexdigest()


@dataclass(frozen=True)
class Statement:
    start: date
    end: date
    vehicles: list[dict]  # the verification row of each vehicle, with `evidence_sha256` and `evidence`

    def to_json(self) -> dict:
        return {
            "statement": "fleetlake mileage verification", "version": 1,
            "period": {"start": self.start.isoformat(), "end": self.end.isoformat(), "timezone": "UTC",
                       "inclusive": True},
            "digest": {"algorithm": "sha256", "over": "each vehicle's evidence readings",
                       "canonical_form": DIGEST_FORM},
            "vehicles": self.vehicles,
        }


def _jsonable(value):
    if isinstance(value, datetime):
        return _utc(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def known_vehicles(con: duckdb.DuckDBPyConnection) -> set[str]:
    try:
        return {v for (v,) in con.execute("SELECT vehicle_id FROM marts.vehicles").fetchall()}
    except duckdb.CatalogException as error:
        raise StatementError("the warehouse has no marts yet: run `fleetlake run` first") from error


def mileage_statement(con: duckdb.DuckDBPyConnection, vehicle_ids: list[str], start: date, end: date) -> Statement:
    """The verified mileage of each vehicle from `start` to `end` (UTC days, inclusive),
    from the macros marts.verified_mileage and marts.mileage_evidence."""
    if start > end:
        raise StatementError(f"the period starts after it ends: {start} > {end}")
    if not vehicle_ids:
        raise StatementError("no vehicle given")
    unknown = sorted(set(vehicle_ids) - known_vehicles(con))
    if unknown:
        raise StatementError(f"unknown vehicle{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}")
    rows = []
    for vehicle_id in dict.fromkeys(vehicle_ids):  # each once, in the order given
        args = [vehicle_id, start, end]
        row = con.sql("SELECT * FROM marts.verified_mileage(?, ?, ?)", params=args).pl().to_dicts()[0]
        evidence = (con.sql("SELECT * FROM marts.mileage_evidence(?, ?, ?)", params=args).pl()
                    .select(EVIDENCE_COLUMNS).to_dicts())
        for reading in evidence:
            reading["odometer_km"] = round(reading["odometer_km"], 3)
            reading["credited_km"] = round(reading["credited_km"], 3)
        row = {k: _jsonable(row[k]) for k in VERIFICATION_COLUMNS}
        row["evidence_sha256"] = evidence_digest(vehicle_id, evidence)
        row["evidence"] = [{k: _jsonable(v) for k, v in r.items()} for r in evidence]
        rows.append(row)
    return Statement(start=start, end=end, vehicles=rows)


def write_statement(statement: Statement, stem: Path) -> list[Path]:
    """`<stem>.json` (everything), `<stem>.csv` (one row per vehicle, with its digest) and
    `<stem>.evidence.csv` (one row per evidence reading). Returns the paths written."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(stem.name + suffix) for suffix in (".json", ".csv", ".evidence.csv")]
    paths[0].write_text(json.dumps(statement.to_json(), indent=2) + "\n", encoding="utf-8")
    with paths[1].open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(VERIFICATION_COLUMNS + ["evidence_sha256"])
        for v in statement.vehicles:
            writer.writerow([";".join(v[c]) if c == "anomalies" else v[c] for c in VERIFICATION_COLUMNS]
                            + [v["evidence_sha256"]])
    with paths[2].open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["vehicle_id"] + EVIDENCE_COLUMNS)
        for v in statement.vehicles:
            writer.writerows([v["vehicle_id"]] + [r[c] for c in EVIDENCE_COLUMNS] for r in v["evidence"])
    return paths


def _statement_shape(document) -> None:
    """Raise StatementError saying what is wrong when `document` (parsed JSON) does not have
    the shape `to_json` writes, as far as checking the digests needs it."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise StatementError(what)

    need(isinstance(document, dict), f"a statement is a JSON object, this is a JSON {type(document).__name__}")
    need("vehicles" in document, "it has no `vehicles` list")
    need(isinstance(document["vehicles"], list), "its `vehicles` is not a list")
    for n, vehicle in enumerate(document["vehicles"], start=1):
        need(isinstance(vehicle, dict), f"vehicle {n} is not a JSON object")
        for name, kind, text in (("vehicle_id", str, "a string"), ("evidence_sha256", str, "a string"),
                                 ("evidence", list, "a list")):
            need(name in vehicle, f"vehicle {n} has no `{name}`")
            need(isinstance(vehicle[name], kind), f"vehicle {n}'s `{name}` is not {text}")
        for r, reading in enumerate(vehicle["evidence"], start=1):
            where = f"evidence reading {r} of vehicle {n} ({vehicle['vehicle_id']})"
            need(isinstance(reading, dict), f"{where} is not a JSON object")
            for name in ("reading_time", "odometer_km"):
                need(name in reading, f"{where} has no `{name}`")
            need(isinstance(reading["odometer_km"], int | float) and not isinstance(reading["odometer_km"], bool),
                 f"{where}: `odometer_km` is not a number")
            try:
                _utc(reading["reading_time"])
            except (TypeError, ValueError, AttributeError):
                raise StatementError(f"{where}: `reading_time` is not an ISO 8601 time") from None


def check_statement(document) -> list[str]:
    """Vehicles of a statement (as read from its JSON) whose evidence does not match its
    digest: empty when the statement is intact. StatementError when it is no statement."""
    _statement_shape(document)
    return [v["vehicle_id"] for v in document["vehicles"]
            if evidence_digest(v["vehicle_id"], v["evidence"]) != v["evidence_sha256"]]


STATUSES = ("VERIFIED", "NEEDS_REVIEW", "INSUFFICIENT_DATA")


def status_summary(vehicles: list[dict]) -> str:
    """One line for a statement of many vehicles: how many have each status, and the
    distance they account for."""
    counts = {status: sum(1 for v in vehicles if v["status"] == status) for status in STATUSES}
    km = {status: sum(v["distance_km"] or 0 for v in vehicles if v["status"] == status) for status in STATUSES}
    parts = [f"{counts[s]} {s} ({km[s]:,.1f} km)" for s in STATUSES]
    return f"summary: {len(vehicles)} vehicles: " + ", ".join(parts)
