"""The day loop of the simulated fleet: each day runs the same stages over the fleet's state.

drive and charge -> plan oil changes -> reading times -> true state -> slow slots and oil life
-> odometer faults -> reported values -> delivery ids and times -> signal faults -> triggers and
DTC lists -> late and duplicate picks -> encode -> redeliveries -> vehicle errors and verify
events -> land the day's files -> record the day's truth.

Each stage draws from its own seeded stream in a fixed order, so the same config always
writes the same bytes; reordering draws within a stream changes every file after it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import catalog as C
from .activity import UNIFORMS_PER_DAY, Draws, VehicleActivity
from .config import SimulationConfig, SimulationSummary
from .encode import (PayloadFormats, dtc_lists_json, newer_signal_columns, payload_formats, triggers_json,
                     vehicle_error_line, vehicle_state_lines, verify_line)
from .faults import (AppliedFaults, FaultPlan, apply_odometer_faults, apply_signal_faults, choose_redeliveries,
                     plan_faults, record_gap_edges)
from .fleet import DAY, Fleet, build_fleet
from .ids import uuids
from .landing import LandingWriter, day_windows, delivery_window, redeliver_duplicates, redeliver_late
from .readings import delivery_times, first_in_slow_slot, reading_times, true_state
from .sensors import grid_voltage, report_odometer, report_values
from .timeline import DayTimeline
from .truth import TruthBuilder
from .wear import EngineOil, end_oil_day, low_voltage_soc, oil_life_at, plan_oil_changes

PLAN_UNIFORMS = 64  # pre-drawn uniforms per vehicle for planning one day's trips


@dataclass
class Streams:
    """One seeded generator per concern: adding draws to one leaves the others' output unchanged."""

    fleet: np.random.Generator
    activity: np.random.Generator
    readings: np.random.Generator
    ids: np.random.Generator
    faults: np.random.Generator
    landing: np.random.Generator
    errors: np.random.Generator
    truth: np.random.Generator

    @classmethod
    def from_seed(cls, seed: int) -> Streams:
        return cls(*(np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(8)))


@dataclass
class Run:
    """What stays fixed for the whole run."""

    cfg: SimulationConfig
    fleet: Fleet
    plan: FaultPlan
    formats: PayloadFormats
    home_grid_voltage: np.ndarray
    streams: Streams
    writer: LandingWriter
    truth: TruthBuilder


@dataclass
class FleetState:
    """What each day hands to the next."""

    vehicles: list  # VehicleActivity per vehicle: keyframes and events not yet taken, charging sessions
    trips: list  # per vehicle, the trips planned for the day about to be simulated
    oil: EngineOil
    last_slow_slot: np.ndarray
    applied_faults: AppliedFaults
    counts: dict
    sessions: list  # every charging session so far (the vehicles append to it)
    service_at_s: np.ndarray  # per vehicle, the time of its oil change (inf: none yet)
    service_odometer_km: np.ndarray


@dataclass
class DriveDay:
    timeline: DayTimeline
    events: list  # per vehicle: (time, event kind) of the day
    odometer_at_start: np.ndarray
    odometer_at_end: np.ndarray


def simulate_fleet(cfg: SimulationConfig | None = None, landing_dir: Path | str = "data/landing",
                   truth_dir: Path | str = "data/truth") -> SimulationSummary:
    """Simulate the fleet; write landing files under ``landing_dir`` and the truth under ``truth_dir``."""
    cfg = cfg or SimulationConfig()
    landing_dir, truth_dir = Path(landing_dir), Path(truth_dir)
    landing_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    streams = Streams.from_seed(cfg.seed)
    fleet = build_fleet(cfg, streams.fleet)
    plan = plan_faults(cfg, fleet, streams.faults)
    sessions: list = []
    vehicles = [VehicleActivity(fleet, v, sessions) for v in range(fleet.size)]
    faults: list = []  # truth and landing writer both append to it
    run = Run(cfg=cfg, fleet=fleet, plan=plan,
              formats=payload_formats(fleet, uuids(streams.ids, len(C.WEBHOOKS))),
              home_grid_voltage=grid_voltage(fleet, streams.readings), streams=streams,
              writer=LandingWriter(cfg, landing_dir, fleet.start_s, streams.landing, plan, faults),
              truth=TruthBuilder(cfg, fleet, plan, faults))
    first_plan_uniforms = streams.activity.random((fleet.size, PLAN_UNIFORMS))
    state = FleetState(
        vehicles=vehicles,
        trips=[vehicles[v].plan_day(fleet.start_s, _weekday(fleet.start_s), Draws(first_plan_uniforms[v]))
               for v in range(fleet.size)],
        oil=EngineOil.at_start(fleet),
        last_slow_slot=np.full(fleet.size, -(1 << 62), dtype=np.int64),
        applied_faults=AppliedFaults.at_start(plan),
        counts=dict(vehicle_state=0, vehicle_error=0, verify=0, signals=0, signal_errors=0),
        sessions=sessions, service_at_s=np.full(fleet.size, np.inf), service_odometer_km=np.full(fleet.size, np.nan),
    )
    for day in range(cfg.days):
        simulate_day(run, state, day)
    return finish(run, state, sessions, landing_dir, truth_dir)


def simulate_day(run: Run, state: FleetState, day: int) -> None:
    cfg, fleet, plan, formats, streams = run.cfg, run.fleet, run.plan, run.formats, run.streams
    day_start = fleet.start_s + day * DAY
    day_end = day_start + DAY
    drive_day = drive_and_charge(state, fleet, day_start, streams.activity)
    timeline = drive_day.timeline
    oil_changes = plan_oil_changes(state.oil, fleet, timeline, day_start, drive_day.odometer_at_start,
                                   streams.readings)

    state.service_at_s = np.where(oil_changes.changed, oil_changes.changed_at, state.service_at_s)
    state.service_odometer_km = np.where(oil_changes.changed, oil_changes.odometer_at_change,
                                         state.service_odometer_km)

    readings = reading_times(cfg, fleet, timeline, drive_day.events, plan, day_start, streams.readings)
    vehicle, at = readings.vehicle, readings.at
    true = true_state(timeline, readings)
    slow = first_in_slow_slot(fleet, readings, state.last_slow_slot)
    oil_life = oil_life_at(state.oil, oil_changes, fleet, vehicle, at, true.odometer_km)

    odometer = apply_odometer_faults(plan, state.applied_faults, fleet, vehicle, at, true.odometer_km, day_end,
                                     run.truth)
    record_gap_edges(plan, timeline, day_start, day_end, run.truth)
    odometer_value, odometer_unit = report_odometer(fleet, readings, odometer.reported_km, odometer.in_miles)
    values = report_values(fleet, readings, true, oil_life, run.home_grid_voltage, streams.readings)
    event_id = uuids(streams.ids, len(readings))
    delivery_id = uuids(streams.ids, len(readings))
    times = delivery_times(fleet, readings, true, streams.readings)
    signal_faults = apply_signal_faults(plan, state.applied_faults, fleet, vehicle, at, slow, odometer_value,
                                        true.odometer_km, event_id, day_end, run.truth, streams.readings)
    trigger_json = triggers_json(formats, vehicle, readings.event_trigger, true.driving, true.charging, slow)
    dtc_json = dtc_lists_json(formats, fleet, vehicle, at, slow)
    newer = newer_signal_columns(fleet, formats, vehicle, at, true, slow,
                                 in_dc_session(state.sessions, vehicle, at, day_start, day_end),
                                 low_voltage_soc(fleet, vehicle, at), state.service_at_s, state.service_odometer_km,
                                 state.sessions)
    run.truth.low_voltage_statuses(vehicle, at, newer["low_voltage_status"])
    redeliveries = choose_redeliveries(plan, cfg, fleet, day, odometer.spike_rows, times.delivered_ms,
                                       streams.readings)

    delivered_number = np.where(formats.delivered_at_in_seconds[vehicle], redeliveries.delivered_ms // 1000,
                                redeliveries.delivered_ms)
    state_lines = vehicle_state_lines(fleet, formats, readings, true, values, odometer_value, odometer_unit,
                                      signal_faults, times, delivered_number, event_id, delivery_id, slow,
                                      trigger_json, dtc_json, newer)
    state.counts["signals"] += state_lines.signal_count
    state.counts["vehicle_state"] += len(readings)
    state.counts["signal_errors"] += signal_faults.error_count

    if plan.enabled:
        window = delivery_window(redeliveries.delivered_ms, day_start, cfg.files_per_day)
        redeliver_duplicates(run.writer, cfg, fleet, formats, day, readings, state_lines, event_id, redeliveries,
                             window, streams.ids, streams.readings)
        redeliver_late(run.writer, cfg, fleet, day, readings, state_lines, event_id, redeliveries)

    other_ms, other_lines = vehicle_errors_and_verify(run, state.counts, day, day_start, day_end)
    on_time = np.nonzero(~redeliveries.late)[0]
    windows = day_windows(redeliveries.delivered_ms[on_time], [state_lines.lines[i] for i in on_time], other_ms,
                          other_lines, day_start, cfg.files_per_day)
    del state_lines
    run.writer.write_day(day, windows)
    del windows

    run.truth.add_day(day, day_start, drive_day.odometer_at_start, drive_day.odometer_at_end)
    state.oil = end_oil_day(state.oil, oil_changes, fleet, timeline, day, drive_day.odometer_at_end, run.truth)


def in_dc_session(sessions: list, vehicle: np.ndarray, at: np.ndarray, day_start: float,
                  day_end: float) -> np.ndarray:
    """Whether each reading falls between the plug-in and the unplug of a DC fast-charging session."""
    inside = np.zeros(len(vehicle), dtype=bool)
    for session in sessions:
        v, plugged_at, unplugged_at, is_dc = session[0], session[1], session[4], session[6]
        if is_dc and plugged_at < day_end and unplugged_at >= day_start:
            inside |= (vehicle == v) & (at >= plugged_at) & (at <= unplugged_at)
    return inside


def drive_and_charge(state: FleetState, fleet: Fleet, day_start: float, rng: np.random.Generator) -> DriveDay:
    """Drive and charge every vehicle through the day (planning tomorrow's trips first: tonight's
    charging ends at tomorrow's first departure)."""
    day_end = day_start + DAY
    activity_uniforms = rng.random((fleet.size, UNIFORMS_PER_DAY))
    plan_uniforms = rng.random((fleet.size, PLAN_UNIFORMS))
    tomorrow = []
    for v, vehicle in enumerate(state.vehicles):
        draws = Draws(plan_uniforms[v])
        trips = vehicle.plan_day(day_end, _weekday(day_end), draws)
        tomorrow.append(trips)
        first_departure = trips[0][0] if trips else day_end + draws.between(7.0, 20.0) * 3600.0
        vehicle.simulate_day(state.trips[v], first_departure, day_start, Draws(activity_uniforms[v]))
    state.trips = tomorrow
    keyframes, events = [], []
    for vehicle in state.vehicles:
        day_keyframes, day_events = vehicle.take_day(day_start)
        keyframes.append(day_keyframes)
        events.append(day_events)
    timeline = DayTimeline(keyframes, day_start)
    every_vehicle = np.arange(fleet.size)
    return DriveDay(timeline, events, timeline.odometer_at(every_vehicle, np.full(fleet.size, day_start)),
                    timeline.odometer_at(every_vehicle, np.full(fleet.size, day_end)))


def vehicle_errors_and_verify(run: Run, counts: dict, day: int, day_start: float,
                              day_end: float) -> tuple[list, list]:
    """The day's VEHICLE_ERROR deliveries (error and resolution) and VERIFY challenges
    (every webhook on the first day, the first one again mid-run)."""
    fleet, formats, rng = run.fleet, run.formats, run.streams.errors
    delivered_ms, lines = [], []
    for v, error_at, error_index, resolved_at in run.plan.vehicle_errors:
        for error_state, at in (("ERROR", error_at), ("RESOLVED", resolved_at)):
            if at is None or not (day_start <= at < day_end):
                continue
            error = C.VEHICLE_ERRORS[error_index]
            event_id, delivery_id = uuids(rng, 2)
            ms = int(at * 1000) + int(rng.integers(200, 3000))
            delivered_ms.append(ms)
            lines.append(vehicle_error_line(fleet, formats, v, str(event_id), str(delivery_id), ms, error,
                                            error_state))
            counts["vehicle_error"] += 1
            run.truth.fault(v, "VEHICLE_ERROR", at, f"{error[0]}/{error[1]} {error_state}", event_id=str(event_id))
    if day == 0 or day == run.cfg.days // 2:
        for webhook in (range(len(C.WEBHOOKS)) if day == 0 else [0]):
            event_id, delivery_id = uuids(rng, 2)
            ms = int((day_start + 30 + 7 * webhook) * 1000)
            challenge = "".join("%02x" % b for b in rng.integers(0, 256, 16))
            delivered_ms.append(ms)
            lines.append(verify_line(formats, webhook, str(event_id), str(delivery_id), ms, challenge))
            counts["verify"] += 1
    return delivered_ms, lines


def finish(run: Run, state: FleetState, sessions: list, landing_dir: Path, truth_dir: Path) -> SimulationSummary:
    """Wait for the last files, write the truth and the summary."""
    writer, truth, counts = run.writer, run.truth, state.counts
    writer.close()
    fault_counts = truth.write(sessions, run.streams.truth, truth_dir)
    deliveries = counts["vehicle_state"] + counts["vehicle_error"] + counts["verify"]
    summary = SimulationSummary(
        files=writer.files, lines=writer.lines, deliveries=deliveries,
        vehicle_state=counts["vehicle_state"], vehicle_error=counts["vehicle_error"], verify=counts["verify"],
        duplicates=writer.duplicates, late=writer.late, malformed=writer.malformed, signals=counts["signals"],
        signal_errors=counts["signal_errors"], vehicles=run.fleet.size, days=run.cfg.days,
        charging_sessions=truth.n_sessions, faults=fault_counts,
        landing_dir=str(landing_dir), truth_dir=str(truth_dir))
    assert summary.lines == deliveries + writer.duplicates + writer.malformed, "line accounting"
    truth.write_summary(summary, truth_dir)
    return summary


def _weekday(t: float) -> bool:
    return datetime.fromtimestamp(t, tz=timezone.utc).weekday() < 5
