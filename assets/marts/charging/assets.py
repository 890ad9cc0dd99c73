"""Charging marts for energy teams: sessions, the fleet's load profile, daily energy and
battery health, built together from the readings (one pass, one configuration)."""

import uuid
from dataclasses import dataclass, fields, replace
from datetime import date

import dagster as dg
import polars as pl

from assets.marts.charging.places import location_types, session_places
from assets.marts.charging.records import RECORD_METRICS, RECORD_SCHEMA, charge_records, reconcile_with_records
from assets.marts.charging.sessions import (CHARGING_METRICS, battery_health, charging_readings, find_sessions,
                                            measure_sessions, nominal_capacity, plug_timeline, range_at_full,
                                            session_capacity_estimates, session_readings, vehicle_capacity)
from assets.marts.charging.time_of_use import daily_energy, load_profile, parse_windows, session_costs, time_of_use
from assets.marts.build_state import MartScope
from assets.marts.protocol import SCOPE_VIEW, MartBuild, MartCheck, MartSpec, mart_family, vehicle_batches
from assets.marts.warehouse_io import MART_SCHEMA, lake_scan, table_exists
from assets.readings import readings
from quality.suites import battery_health_suite, charging_sessions_suite
from storage.memory import owned, release_freed_memory
from storage.resources import LakeResource

SESSION_ID_NAMESPACE = uuid.UUID("6f1c2a4e-5b7d-4c0e-9a8b-3d2f1e0c9b7a")


class Tariff(dg.Config):
    """Prices at one location type, in the configured currency."""

    peak_per_kwh: float
    off_peak_per_kwh: float
    session_fee: float = 0.0


class ChargingConfig(dg.Config):
    """How charging is costed and put into local time. The defaults are what `fleetlake run`
    and `fleetlake demo` use."""

    timezone: str = "UTC"  # IANA name of the fleet's local time (time of use, overnight, load profile)
    peak_windows: list[str] = ["16:00-21:00"]  # local 'HH:MM-HH:MM', quarter hours; may wrap midnight
    peak_on_weekends: bool = False  # weekends are all off-peak unless this is set
    currency: str = "EUR"
    home: Tariff = Tariff(peak_per_kwh=0.40, off_peak_per_kwh=0.25)
    work: Tariff = Tariff(peak_per_kwh=0.30, off_peak_per_kwh=0.30)
    public: Tariff = Tariff(peak_per_kwh=0.59, off_peak_per_kwh=0.59, session_fee=0.50)
    unknown: Tariff = Tariff(peak_per_kwh=0.59, off_peak_per_kwh=0.59, session_fee=0.50)
    # Share of the energy from the wall that reaches the battery (charger and battery losses);
    # the grid energy, costs and load profile divide the energy added by it.
    ac_efficiency: float = 0.90
    dc_efficiency: float = 0.94

    def tariffs(self) -> pl.DataFrame:
        rows = [{"location_type": name, **getattr(self, name).model_dump()}
                for name in ("home", "work", "public", "unknown")]
        return pl.DataFrame(rows, schema={"location_type": pl.String, "peak_per_kwh": pl.Float64,
                                          "off_peak_per_kwh": pl.Float64, "session_fee": pl.Float64})


SESSION_COLUMNS = (
    "session_id", "vehicle_id", "started_at", "ended_at", "duration_min", "plugged_in_at", "unplugged_at",
    "plugged_in_min", "idle_min", "charge_start_estimated_at", "charge_end_estimated_at", "charging_readings",
    "soc_start_pct", "soc_end_pct", "energy_added_kwh", "energy_source", "energy_low_kwh", "energy_high_kwh",
    "charge_record_id", "charge_record_energy_kwh", "energy_vs_record_pct", "grid_energy_kwh", "avg_power_kw",
    "max_power_kw", "power_source", "is_dc_fast", "current_type", "current_type_source", "charge_limit_pct",
    "completion", "location_type", "area", "peak_energy_kwh",
    "off_peak_energy_kwh", "cost", "currency",
)


def _minutes(later: str, earlier: str) -> pl.Expr:
    return (pl.col(later) - pl.col(earlier)).dt.total_microseconds() / 1e6 / 60.0


def session_ids(frame: pl.DataFrame) -> pl.Series:
    """A stable id per session: the same vehicle and first charging reading give the same id."""
    return pl.Series("session_id", [
        str(uuid.uuid5(SESSION_ID_NAMESPACE, f"{v}|{t.isoformat()}"))
        for v, t in frame.select("vehicle_id", "started_at").iter_rows()], dtype=pl.String)


# A reading that says whether the car is charging: the period the load profile averages
# over runs from the first to the last of them.
SAYS_IF_CHARGING = (pl.col("metric") == "is_charging") & pl.col("value").is_not_null()


@dataclass(frozen=True)
class ChargingFacts:
    """What the charging marts take from some vehicles' readings: their sessions as found,
    what the readings say of each session's energy, and per vehicle its nominal capacity,
    the places of its sessions and its range at full. Small beside the readings; the facts
    of batches of vehicles concatenate into the facts of all of them."""

    found: pl.DataFrame  # find_sessions
    measured: pl.DataFrame  # session_capacity_estimates
    nominal: pl.DataFrame  # nominal_capacity
    places: pl.DataFrame  # session_places
    ranges: pl.DataFrame  # range_at_full

    @classmethod
    def of(cls, distinct: pl.DataFrame) -> "ChargingFacts":
        """From the charging readings (`charging_readings`) of some vehicles."""
        found = find_sessions(plug_timeline(distinct))
        facts = (found, session_capacity_estimates(session_readings(distinct, found)), nominal_capacity(distinct),
                 session_places(distinct, found), range_at_full(distinct))
        return cls(*map(owned, facts))  # kept while the next batches are read: not their batch's strings

    @classmethod
    def concat(cls, parts: list["ChargingFacts"]) -> "ChargingFacts":
        return cls(*(pl.concat([getattr(p, f.name) for p in parts]) for f in fields(cls)))


def vehicle_charging_marts(facts: ChargingFacts, config: ChargingConfig,
                           vehicles: pl.DataFrame | None = None,
                           records: pl.DataFrame | None = None) -> dict[str, pl.DataFrame]:
    """The charging marts whose rows belong to one vehicle (sessions, battery health), from
    the charging facts of some vehicles and, where known, each vehicle's make and model
    (`vehicles`: same-model cars share capacity ratios, so the facts must hold every car of
    a model they hold one of) and the cars' own charge records (`records`: RECORD_SCHEMA,
    see records.py)."""
    parse_windows(config.peak_windows)  # a bad window fails before any work
    found, measured, nominal = facts.found, facts.measured, facts.nominal
    sessions = measure_sessions(found, measured, vehicle_capacity(measured, nominal, vehicles))
    sessions = reconcile_with_records(sessions, records if records is not None else RECORD_SCHEMA.to_frame())
    sessions = sessions.join(facts.places, on=["vehicle_id", "plug_id"], how="left")
    sessions = sessions.join(location_types(sessions, config.timezone), on=["vehicle_id", "plug_id"], how="left")
    sessions = sessions.with_columns(
        session_ids(sessions),
        # the charger's own losses depend on the current type, which the car may report itself
        (pl.col("energy_added_kwh") / pl.when(pl.col("current_type") == "DC").then(config.dc_efficiency)
         .otherwise(config.ac_efficiency)).alias("grid_energy_kwh"),
        _minutes("ended_at", "started_at").alias("duration_min"),
        _minutes("unplugged_at", "plugged_in_at").alias("plugged_in_min"),
    ).with_columns((pl.col("plugged_in_min") - pl.col("duration_min")).alias("idle_min"))
    sessions = sessions.join(time_of_use(sessions, config.timezone, config.peak_windows, config.peak_on_weekends),
                             on="session_id", how="left")
    sessions = session_costs(sessions, config.tariffs()).with_columns(pl.lit(config.currency).alias("currency"))
    sessions = sessions.select(SESSION_COLUMNS).sort("vehicle_id", "started_at")
    health = battery_health(measured.join(found.select("vehicle_id", "plug_id", "started_at"),
                                          on=["vehicle_id", "plug_id"]), nominal, facts.ranges)
    return {"charging_sessions": sessions, "battery_health": health}


def fleet_charging_marts(sessions: pl.DataFrame, config: ChargingConfig,
                         charging_times: tuple | None) -> dict[str, pl.DataFrame]:
    """The fleet's charging marts (load profile, daily energy) from every session and the
    first and last time any car said whether it was charging (the period the profile
    averages over; None without any)."""
    first_day, last_day = (None, None) if charging_times is None else (
        _local_day(charging_times[0], config.timezone), _local_day(charging_times[1], config.timezone))
    return {
        "charging_load_profile": load_profile(sessions, config.timezone, first_day, last_day),
        "charging_daily_energy": daily_energy(sessions, config.timezone, config.peak_windows,
                                              config.peak_on_weekends),
    }


def charging_marts(readings_frame: pl.DataFrame, config: ChargingConfig,
                   vehicles: pl.DataFrame | None = None, records: pl.DataFrame | None = None) -> dict[str, pl.DataFrame]:
    """The charging marts from readings (long format: `CHARGING_READING_COLUMNS`) and, where
    known, each vehicle's make and model (`vehicles`: same-model cars share capacity ratios)
    and the cars' own charge records (`records`: RECORD_SCHEMA, see records.py)."""
    distinct = charging_readings(readings_frame)
    by_vehicle = vehicle_charging_marts(ChargingFacts.of(distinct), config, vehicles, records)
    flagged = distinct.filter(SAYS_IF_CHARGING)["reading_time"]
    span = None if flagged.is_empty() else (flagged.min(), flagged.max())
    return {**by_vehicle, **fleet_charging_marts(by_vehicle["charging_sessions"], config, span)}


def _local_day(moment, timezone: str) -> date:
    return pl.Series([moment]).dt.convert_time_zone(timezone).dt.date()[0]


CHARGING_READING_COLUMNS = ["vehicle_id", "reading_time", "metric", "component", "value", "delivered_at", "event_id"]


def load_charging_readings(lake: LakeResource, scope: MartScope | None = None) -> pl.DataFrame:
    """The charging readings (`charging_readings`) of the scope's vehicles: deduplicated in
    the scan, so that only the columns the marts use are held."""
    scan = lake_scan(lake, "readings").filter(pl.col("metric").is_in(CHARGING_METRICS))
    return charging_readings((scope.select(scan) if scope is not None else scan).select(CHARGING_READING_COLUMNS)).collect()


def load_charge_records(lake: LakeResource, scope: MartScope | None = None) -> pl.DataFrame:
    """The cars' own charge records (`charge-chargerecords`), one row per record."""
    scan = lake_scan(lake, "readings").filter(pl.col("metric").is_in(RECORD_METRICS))
    return charge_records((scope.select(scan) if scope is not None else scan)
                          .select("vehicle_id", "metric", "component", "value", "noted_at", "delivered_at").collect())


def load_vehicle_models(lake: LakeResource) -> pl.DataFrame:
    """Each vehicle's make and model, as its deliveries name them (the latest one)."""
    # streamed: a vehicle's latest delivery naming it, without holding every delivery
    return (lake_scan(lake, "deliveries").filter(pl.col("make").is_not_null() & pl.col("model").is_not_null())
            .group_by("vehicle_id").agg(pl.col("make", "model").sort_by("delivered_at").last())
            .collect(engine="streaming"))


def load_charging_times(lake: LakeResource) -> tuple | None:
    """The first and last time any car of the fleet said whether it was charging."""
    found = (lake_scan(lake, "readings").filter(SAYS_IF_CHARGING)
             .select(pl.col("reading_time").min().alias("first"), pl.col("reading_time").max().alias("last"))
             .collect(engine="streaming"))
    return None if found["first"][0] is None else (found["first"][0], found["last"][0])


def same_models(build: MartBuild) -> MartScope:
    """The scope with every car of a make and model that a car in it has or ever had: their
    sessions' energy rests on capacity ratios shared by the model, and a car whose deliveries
    now name another model has left its old model's ratios."""
    touched = sorted(build.scope.vehicles or ())
    named = (lake_scan(build.lake, "deliveries").filter(pl.col("vehicle_id").is_in(touched))
             .select("make", "model").drop_nulls().unique().collect())
    peers = load_vehicle_models(build.lake).join(named, on=["make", "model"])["vehicle_id"]
    return replace(build.scope, vehicles=frozenset(touched) | frozenset(peers))


CHARGING_MARTS = [
    MartSpec("charging_sessions", ("session_id",),
             "One row per charging session: plugged-in and charging times, idle time, SoC, energy into the battery "
             "and from the grid, power, DC fast, location type, coarse area, peak/off-peak energy and cost.",
             MartCheck(charging_sessions_suite, "GX suite `charging_sessions`: unique ids, ordered times, SoC within "
                                                "0-100, energy and power non-negative, known location types."),
             scoped=True),
    MartSpec("charging_load_profile", ("day_type", "hour", "location_type"),
             "Day type × local hour × location type: the fleet's average grid power, the energy drawn and the "
             "sessions charging."),
    MartSpec("charging_daily_energy", ("day", "location_type"),
             "Local day × location type: grid energy drawn (peak / off-peak), sessions and vehicles charging."),
    MartSpec("battery_health", ("vehicle_id", "month"),
             "Vehicle × month: usable capacity estimated from sessions that added enough energy, and state of "
             "health against the nominal capacity.",
             MartCheck(battery_health_suite, "GX suite `battery_health`: one row per vehicle and month, capacity "
                                             "positive, state of health plausible."),
             scoped=True),
]


@mart_family("charging", CHARGING_MARTS, deps=[readings], config=ChargingConfig, widen_scope=same_models,
             batches=None)
def charging(build: MartBuild) -> dict[str, pl.DataFrame]:
    """Sessions from the readings, then everything energy teams derive from them. A build
    for some vehicles recomputes their sessions and battery health, then the fleet's load
    profile and daily energy from every session. The readings are read in batches of
    vehicles, each reduced to its charging facts: memory follows the batch."""
    # Half the warehouse's batch: charging reads 13 metrics of each car, most of its readings.
    batches = vehicle_batches(build, share=0.5)
    facts, records = [], []
    for vehicles in batches or [frozenset()]:
        batch = MartScope(vehicles, build.scope.lake_state)
        facts.append(ChargingFacts.of(load_charging_readings(build.lake, batch)))
        records.append(load_charge_records(build.lake, batch))
        release_freed_memory()
    by_vehicle = vehicle_charging_marts(ChargingFacts.concat(facts), build.config, load_vehicle_models(build.lake),
                                        pl.concat(records))
    sessions = by_vehicle["charging_sessions"]
    # the other vehicles' sessions (none in a full build)
    kept = build.con.sql(f"SELECT * FROM {MART_SCHEMA}.charging_sessions WHERE vehicle_id NOT IN "
                         f"(SELECT vehicle_id FROM {SCOPE_VIEW})").pl() \
        if not build.scope.full and table_exists(build.con, "charging_sessions") else sessions.clear()
    every = pl.concat([kept.cast(sessions.schema), sessions]).sort("vehicle_id", "started_at")  # type: ignore[arg-type]
    return {**by_vehicle, **fleet_charging_marts(every, build.config, load_charging_times(build.lake))}
