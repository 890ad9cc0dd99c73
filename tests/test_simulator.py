"""Tests of the simulated fleet (pipelines.sources.simulator): shape, determinism, physics, faults."""
from __future__ import annotations

import gzip
import hashlib
import json
import re
import sys
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

try:
    from pipelines.sources.simulator import SimulationConfig, simulate_fleet
except ModuleNotFoundError:  # running without the project installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pipelines.sources.simulator import SimulationConfig, simulate_fleet

from pipelines.sources.simulator.catalog import KM_PER_MILE, KPA_PER_BAR, KPA_PER_PSI, SIGNALS

SMALL = dict(vehicles=8, days=5, start=date(2026, 9, 1), interval_minutes=15)
PATH_RE = re.compile(r"^(\d{4})/(\d{2})/(\d{2})/deliveries-(\d{4})-(\d{2})-(\d{2})T(\d{2})-\d{6}\.ndjson(\.gz)?$")
KM_UNITS = {"km": 1.0, "kilometers": 1.0, "mi": KM_PER_MILE, "miles": KM_PER_MILE}
TIRE_UNITS = {"kPa": 1.0, "bar": KPA_PER_BAR, "psi": KPA_PER_PSI}
ERROR_TYPES = {"CONNECTED_SERVICES_ACCOUNT", "VEHICLE_STATE", "COMPATIBILITY", "PERMISSION"}


def _run(tmp: Path, **kw):
    cfg = SimulationConfig(**{**SMALL, **kw})
    summary = simulate_fleet(cfg, landing_dir=tmp / "landing", truth_dir=tmp / "truth")
    return cfg, summary, tmp / "landing", tmp / "truth"


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("faulty"), seed=7, faults=True)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("clean"), seed=7, faults=False)


def _files(landing: Path) -> list[Path]:
    return sorted(p for p in landing.rglob("*") if p.is_file())


def _read_lines(p: Path) -> list[str]:
    raw = p.read_bytes()
    if p.name.endswith(".gz"):
        raw = gzip.decompress(raw)
    text = raw.decode("utf-8")
    assert text.endswith("\n")
    return text[:-1].split("\n")


def _digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in _files(root)}


def _check_shape(obj: dict) -> None:
    """Raise AssertionError unless ``obj`` is a delivery body of the documented shape."""
    assert isinstance(obj, dict)
    assert isinstance(obj["eventId"], str) and len(obj["eventId"]) == 36
    meta = obj["meta"]
    assert meta["version"] == "4.0"
    assert isinstance(meta["deliveryId"], str) and isinstance(meta["webhookId"], str)
    assert isinstance(meta["deliveredAt"], int)
    assert meta["deliveredAt"] > 10**12 or 10**9 < meta["deliveredAt"] < 10**10
    et = obj["eventType"]
    if et == "VERIFY":
        assert isinstance(obj["data"]["challenge"], str)
        return
    data = obj["data"]
    assert isinstance(data["user"]["id"], str)
    veh = data["vehicle"]
    assert {"id", "make", "model", "year"} <= set(veh) and isinstance(veh["year"], int)
    if et == "VEHICLE_ERROR":
        assert data["errors"]
        for e in data["errors"]:
            assert e["type"] in ERROR_TYPES and e["code"] and e["state"] in ("ERROR", "RESOLVED")
            assert "type" in e["resolution"]
        return
    assert et == "VEHICLE_STATE"
    sigs = data["signals"]
    assert meta["signalCount"] == len(sigs)
    codes = [s["code"] for s in sigs]
    assert len(codes) == len(set(codes))
    assert "odometer-traveleddistance" in codes and "location-preciselocation" in codes
    for s in sigs:
        assert (s["name"], s["group"]) == SIGNALS[s["code"]]
        assert "retrievedAt" in s["meta"]
        if s["status"]["value"] == "SUCCESS":
            assert isinstance(s["body"], dict)
        else:
            assert s["status"]["value"] == "ERROR" and "body" not in s
            assert {"type", "code", "description"} <= set(s["status"]["error"])
    assert obj["triggers"]
    for t in obj["triggers"]:
        assert t["type"] == "SIGNAL_UPDATED"
        code = t["signal"] if isinstance(t["signal"], str) else t["signal"]["code"]
        assert code in codes


def _parse_landing(landing: Path):
    """Returns (valid deliveries as (relpath, line_no, obj), invalid lines as {(relpath, line_no)})."""
    good, bad = [], set()
    for p in _files(landing):
        rel = str(p.relative_to(landing))
        for i, line in enumerate(_read_lines(p), start=1):
            try:
                obj = json.loads(line)
                _check_shape(obj)
            except (ValueError, KeyError, TypeError, AssertionError):
                bad.add((rel, i))
                continue
            good.append((rel, i, obj))
    return good, bad


def _ms(iso: str) -> float:
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def _odometer_readings(good) -> dict:
    """vehicle_id -> list of (time s, km, event_id) from SUCCESS odometer signals."""
    out = defaultdict(list)
    for _, _, o in good:
        if o["eventType"] != "VEHICLE_STATE":
            continue
        for s in o["data"]["signals"]:
            if s["code"] == "odometer-traveleddistance" and s["status"]["value"] == "SUCCESS":
                b = s["body"]
                if not isinstance(b["value"], (int, float)) or b["unit"] not in KM_UNITS:
                    continue
                t = _ms(s["meta"].get("oemUpdatedAt") or s["meta"]["retrievedAt"])
                out[o["data"]["vehicle"]["id"]].append((t, b["value"] * KM_UNITS[b["unit"]], o["eventId"]))
    return out


# --------------------------------------------------------------------------------------------
def test_deterministic_bytes(tmp_path, faulty):
    _, s1, landing1, truth1 = faulty
    _, s2, landing2, truth2 = _run(tmp_path / "again", seed=7, faults=True)
    assert s1.files == s2.files and s1.lines == s2.lines
    assert _digest(landing1) == _digest(landing2)
    assert _digest(truth1) == _digest(truth2)
    _, _, landing3, _ = _run(tmp_path / "other", seed=8, faults=True)
    assert _digest(landing1) != _digest(landing3)


def test_path_scheme_and_file_mix(faulty):
    cfg, summary, landing, _ = faulty
    files = [str(p.relative_to(landing)) for p in _files(landing)]
    assert len(files) == summary.files
    assert not [f for f in files if "/." in f or f.endswith(".tmp")]
    suffixes = Counter()
    for f in files:
        m = PATH_RE.match(f)
        assert m, f
        assert m.group(1, 2, 3) == m.group(4, 5, 6)
        assert int(m.group(7)) % (24 // cfg.files_per_day) == 0
        suffixes[bool(m.group(8))] += 1
    assert suffixes[True] > suffixes[False] > 0  # mostly .ndjson.gz, some plain .ndjson
    days = {f[:10] for f in files}
    assert len(days) == cfg.days


def test_every_line_valid_or_recorded_malformed(faulty):
    _, summary, landing, truth = faulty
    good, bad = _parse_landing(landing)
    faults = pl.read_parquet(truth / "faults.parquet")
    mal = faults.filter(pl.col("kind") == "MALFORMED")
    recorded = {(r["file"], r["line_number"]) for r in mal.iter_rows(named=True)}
    assert bad == recorded
    assert len(bad) == summary.malformed >= 3
    assert len(good) + len(bad) == summary.lines
    ids = Counter(o["eventId"] for _, _, o in good)
    assert len(ids) == summary.deliveries
    assert sum(ids.values()) - len(ids) == summary.duplicates
    types = Counter(o["eventType"] for _, _, o in good)
    assert types["VERIFY"] == summary.verify > 0
    assert types["VEHICLE_ERROR"] >= summary.vehicle_error > 0
    # truncated lines name an event that is landed intact too
    for r in mal.iter_rows(named=True):
        if r["event_id"]:
            assert ids[r["event_id"]] >= 1


def test_documented_variations_present(faulty):
    _, _, landing, _ = faulty
    good, _ = _parse_landing(landing)
    seen = Counter()
    for _, _, o in good:
        seen["ms" if o["meta"]["deliveredAt"] > 10**12 else "s"] += 1
        if o["eventType"] != "VEHICLE_STATE":
            continue
        for t in o["triggers"]:
            seen["trigger_" + type(t["signal"]).__name__] += 1
        for s in o["data"]["signals"]:
            if s["status"]["value"] == "ERROR":
                seen["signal_error"] += 1
            if "oemUpdatedAt" not in s["meta"]:
                seen["no_oem"] += 1
            if "unit" in s.get("body", {}):
                seen["unit:" + str(s["body"]["unit"])] += 1
    assert seen["ms"] > seen["s"] > 0
    assert seen["trigger_dict"] > 0 and seen["trigger_str"] > 0
    assert seen["signal_error"] > 0 and seen["no_oem"] > 0
    assert seen["unit:percent"] > 0 and seen["unit:km"] + seen["unit:kilometers"] > 0


def test_units_consistent_with_truth(faulty):
    """Odometer values, converted by their own unit, match the true odometer of that day."""
    _, _, landing, truth = faulty
    good, _ = _parse_landing(landing)
    vehicles = pl.read_parquet(truth / "vehicles.parquet")
    daily = pl.read_parquet(truth / "daily_distance.parquet")
    bounds = {(r["vehicle_id"], r["day"]): (r["odometer_start_km"], r["odometer_end_km"])
              for r in daily.iter_rows(named=True)}
    clean_ids = set(vehicles.filter(pl.col("clean_odometer"))["vehicle_id"])
    units_by_vehicle = defaultdict(set)
    checked = 0
    for _, _, o in good:
        if o["eventType"] != "VEHICLE_STATE":
            continue
        vid = o["data"]["vehicle"]["id"]
        for s in o["data"]["signals"]:
            if s["status"]["value"] != "SUCCESS":
                continue
            b = s["body"]
            if s["code"] == "odometer-traveleddistance" and vid in clean_ids:
                units_by_vehicle[vid].add(b["unit"])
                t = _ms(s["meta"].get("oemUpdatedAt") or s["meta"]["retrievedAt"])
                day = datetime.fromtimestamp(t, tz=timezone.utc).date()
                lo, hi = bounds[(vid, day)]
                km = b["value"] * KM_UNITS[b["unit"]]
                tol = 0.1 * KM_UNITS[b["unit"]] + 1e-6
                assert lo - tol <= km <= hi + tol, (vid, b, lo, hi)
                checked += 1
            elif s["code"] == "wheel-tires" and b["unit"] in TIRE_UNITS:
                for tyre in b["values"]:
                    if isinstance(tyre["tirePressure"], (int, float)):
                        kpa = tyre["tirePressure"] * TIRE_UNITS[b["unit"]]
                        assert 100.0 < kpa < 300.0, b
    assert checked > 100
    miles = vehicles.filter(pl.col("clean_odometer") & (pl.col("odometer_unit") == "mi"))["vehicle_id"]
    for vid in miles:
        assert units_by_vehicle[vid] <= {"mi", "miles"}


def test_truth_odometer_monotone_and_readings_of_clean_vehicles(faulty):
    _, _, landing, truth = faulty
    daily = pl.read_parquet(truth / "daily_distance.parquet").sort(["vehicle_id", "day"])
    assert (daily["distance_km"] >= 0).all()
    chk = daily.with_columns(pl.col("odometer_end_km").shift(1).over("vehicle_id").alias("prev_end"))
    chk = chk.filter(pl.col("prev_end").is_not_null())
    assert ((chk["odometer_start_km"] - chk["prev_end"]).abs() < 1e-6).all()
    assert ((daily["odometer_end_km"] - daily["odometer_start_km"] - daily["distance_km"]).abs() < 1e-3).all()
    per_day = daily.group_by("vehicle_id").agg(pl.col("distance_km").mean())
    assert 10 < per_day["distance_km"].mean() < 150
    good, _ = _parse_landing(landing)
    vehicles = pl.read_parquet(truth / "vehicles.parquet")
    clean_ids = set(vehicles.filter(pl.col("clean_odometer"))["vehicle_id"])
    assert len(clean_ids) > len(vehicles) / 2
    for vid, rs in _odometer_readings(good).items():
        if vid not in clean_ids:
            continue
        rs.sort()
        for (t0, a, _), (t1, b, _) in zip(rs, rs[1:]):
            assert b >= a - 0.17, (vid, t0, a, t1, b)


def test_session_energy_matches_soc_and_capacity(faulty):
    _, _, _, truth = faulty
    s = pl.read_parquet(truth / "charging_sessions.parquet")
    v = pl.read_parquet(truth / "vehicles.parquet")
    assert len(s) > 0
    j = s.join(v.select("vehicle_id", "usable_capacity_kwh", "powertrain"), on="vehicle_id")
    assert (j["powertrain"] != "ICE").all()
    est = (j["soc_end_pct"] - j["soc_start_pct"]) / 100 * j["usable_capacity_kwh"]
    assert ((est - j["energy_added_kwh"]).abs() <= 0.01 + 0.001 * j["energy_added_kwh"]).all()
    assert (j["plugged_at"] <= j["charge_started_at"]).all()
    assert (j["charge_started_at"] < j["charge_ended_at"]).all()
    assert (j["charge_ended_at"] <= j["unplugged_at"]).all()
    assert (j["avg_power_kw"] <= j["max_power_kw"] + 1e-6).all()
    assert (j["soc_end_pct"] <= 100.0 + 1e-9).all() and (j["soc_start_pct"] >= 0).all()
    assert (j["is_dc_fast"] == (j["avg_power_kw"] > 22)).all()
    assert set(j["location_type"]) <= {"home", "work", "public"}


def test_faults_recorded(faulty):
    cfg, summary, landing, truth = faulty
    f = pl.read_parquet(truth / "faults.parquet")
    counts = Counter(f["kind"])
    assert counts == Counter({k: v for k, v in summary.faults.items() if v})
    for k in ("SPIKE", "ROLLBACK", "GAP", "DUPLICATE", "LATE", "MALFORMED", "PERMISSION_REVOKED", "BAD_VALUE",
              "VEHICLE_ERROR"):
        assert counts[k] > 0, k
    good, _ = _parse_landing(landing)
    where = defaultdict(list)
    for rel, _, o in good:
        where[o["eventId"]].append(rel)
    for r in f.filter(pl.col("kind") == "DUPLICATE").iter_rows(named=True):
        assert len(where[r["event_id"]]) >= 2 and r["file"] in where[r["event_id"]]
    for r in f.filter(pl.col("kind") == "LATE").iter_rows(named=True):
        assert where[r["event_id"]] == [r["file"]] or r["file"] in where[r["event_id"]]
        assert r["file"][:10].replace("/", "-") > r["at"].date().isoformat()
    odo = _odometer_readings(good)
    for r in f.filter(pl.col("kind") == "SPIKE").iter_rows(named=True):
        rs = odo[r["vehicle_id"]]
        t = r["at"].timestamp()
        km = [k for (tt, k, _) in rs if abs(tt - t) < 1]
        assert km and abs(km[0] - r["odometer_after_km"]) < 0.2
    for r in f.filter(pl.col("kind").is_in(["SPIKE", "ROLLBACK", "GAP", "UNIT_CHANGE"])).iter_rows(named=True):
        assert r["vehicle_id"] is not None and r["odometer_before_km"] is not None


def test_clean_fleet_has_no_faults(clean):
    _, summary, landing, truth = clean
    good, bad = _parse_landing(landing)
    assert not bad
    assert summary.malformed == summary.duplicates == summary.late == 0
    assert summary.vehicle_error == 0 and summary.signal_errors == 0
    assert len(pl.read_parquet(truth / "faults.parquet")) == 0
    assert all(summary.faults[k] == 0 for k in summary.faults)
    assert pl.read_parquet(truth / "vehicles.parquet")["clean_odometer"].all()
    ids = Counter(o["eventId"] for _, _, o in good)
    assert max(ids.values()) == 1 and len(ids) == summary.deliveries == summary.lines
    for _, _, o in good:
        if o["eventType"] == "VEHICLE_STATE":
            assert all(s["status"]["value"] == "SUCCESS" for s in o["data"]["signals"])
    # lines are in deliveredAt order within each file
    by_file = defaultdict(list)
    for rel, _, o in good:
        d = o["meta"]["deliveredAt"]
        by_file[rel].append(d * 1000 if d < 10**12 else d)
    for rel, ds in by_file.items():
        assert all(b >= a - 999 for a, b in zip(ds, ds[1:])), rel


def test_truth_tables_schema(faulty):
    _, summary, _, truth = faulty
    expect = {
        "vehicles.parquet": ["vehicle_id", "user_id", "make", "model", "year", "vin", "powertrain",
                             "nominal_capacity_kwh", "usable_capacity_kwh", "consumption_kwh_per_km",
                             "odometer_unit", "reports_energy_added", "reports_wattage", "clean_odometer",
                             "home_lat", "home_lon"],
        "daily_distance.parquet": ["vehicle_id", "day", "distance_km", "odometer_start_km", "odometer_end_km"],
        "charging_sessions.parquet": ["session_id", "vehicle_id", "plugged_at", "charge_started_at",
                                      "charge_ended_at", "unplugged_at", "location_type", "is_dc_fast",
                                      "soc_start_pct", "soc_end_pct", "energy_added_kwh", "avg_power_kw",
                                      "max_power_kw"],
        "faults.parquet": ["vehicle_id", "kind", "at", "detail", "odometer_before_km", "odometer_after_km",
                           "event_id", "file"],
        "maintenance.parquet": ["vehicle_id", "component", "baseline_value", "threshold_value", "rate_per_day",
                                "is_leaking", "is_weak", "due_at", "due_odometer_km", "last_reset_at"],
        "dtc.parquet": ["vehicle_id", "code", "first_seen_at", "cleared_at"],
    }
    for name, cols in expect.items():
        df = pl.read_parquet(truth / name)
        assert set(cols) <= set(df.columns), (name, set(cols) - set(df.columns))
    v = pl.read_parquet(truth / "vehicles.parquet")
    assert len(v) == 8 and set(v["powertrain"]) <= {"BEV", "PHEV", "ICE"}
    assert v.filter(pl.col("powertrain") == "ICE")["nominal_capacity_kwh"].null_count() == \
        (v["powertrain"] == "ICE").sum()
    m = pl.read_parquet(truth / "maintenance.parquet")
    assert set(m["component"]) <= {"engine_oil", "tire_front_left", "tire_front_right", "tire_rear_left",
                                   "tire_rear_right", "low_voltage_battery"}
    tyres = m.filter(pl.col("component").str.starts_with("tire_"))
    assert ((tyres["threshold_value"] / tyres["baseline_value"] - 0.75).abs() < 1e-3).all()
    doc = json.loads((truth / "summary.json").read_text())
    assert doc["config"]["seed"] == 7 and doc["counts"]["lines"] == summary.lines


def test_default_fleet_covers_every_fault_and_behaviour(default_simulation):
    cfg = SimulationConfig()
    assert (cfg.seed, cfg.vehicles, cfg.days, cfg.start, cfg.interval_minutes, cfg.faults) == \
        (7, 50, 30, date(2026, 9, 1), 15, True)
    root, summary = default_simulation  # simulate_fleet(SimulationConfig()), shared with the default fleet
    truth = root / "ground_truth"
    assert all(n > 0 for n in summary.faults.values()), summary.faults
    assert summary.files == cfg.days * cfg.files_per_day
    v = pl.read_parquet(truth / "vehicles.parquet")
    assert Counter(v["powertrain"]) == Counter({"BEV": 25, "PHEV": 10, "ICE": 15})
    assert v["clean_odometer"].sum() >= 0.8 * len(v)
    assert 0.05 <= (v["odometer_unit"] == "mi").mean() <= 0.3
    assert v["reports_energy_added"].any() and not v.filter(pl.col("powertrain") != "ICE")["reports_energy_added"].all()
    bev = v.filter(pl.col("powertrain") == "BEV")
    assert ((bev["usable_capacity_kwh"] / bev["nominal_capacity_kwh"]).is_between(0.85, 1.0)).all()
    assert bev["consumption_kwh_per_km"].is_between(0.14, 0.22).all()
    s = pl.read_parquet(truth / "charging_sessions.parquet")
    assert set(s["location_type"]) == {"home", "work", "public"} and s["is_dc_fast"].any()
    assert (s["charge_started_at"].dt.date() != s["charge_ended_at"].dt.date()).any()  # across midnight
    assert (s["charge_started_at"] > s["plugged_at"] + timedelta(hours=1)).any()  # scheduled start
    assert (s["unplugged_at"] > s["charge_ended_at"] + timedelta(hours=1)).any()  # plugged-in idle
    m = pl.read_parquet(truth / "maintenance.parquet")
    assert m["is_leaking"].any() and m["is_weak"].any()
    assert m.filter(pl.col("component") == "engine_oil")["last_reset_at"].is_not_null().any()
    assert m.filter(pl.col("component").str.starts_with("tire_"))["last_reset_at"].is_not_null().any()
    d = pl.read_parquet(truth / "dtc.parquet")
    assert d["cleared_at"].is_not_null().any() and d["cleared_at"].is_null().any()
    f = pl.read_parquet(truth / "faults.parquet")
    assert f.filter(pl.col("kind") == "VEHICLE_ERROR")["detail"].str.contains("RESOLVED").any()
    mal = f.filter(pl.col("kind") == "MALFORMED")["detail"]
    assert mal.str.starts_with("truncated").any() and (mal == "garbage text").any()
