"""Per-vehicle driving and charging, as piecewise-linear keyframes in absolute time.

A vehicle's true state between two keyframes is the linear interpolation of the
"linear" channels (odometer, SoC, fuel, position, energy added) and the value of the
earlier keyframe for the "step" channels (mode, power, heading). Everything is decided
from a block of pre-drawn uniforms per vehicle-day, so the result is deterministic.
"""
from __future__ import annotations

import numpy as np

from . import catalog as C
from .fleet import DAY, Fleet
from .geo import bearing, distance_km, offset

# keyframe columns
AT, ODOMETER, SOC, FUEL, LAT, LON, ENERGY_ADDED, MODE, POWER, HEADING = range(10)
KEYFRAME_COLUMNS = 10
# a mode change gets two keyframes this far apart, so that step channels switch at one instant
EPS = 1e-3
PARKED, DRIVING, PLUGGED, CHARGING = 0, 1, 2, 3

# kinds of the events that make the car send a reading of its own
EVENT_ARRIVAL, EVENT_CABLE, EVENT_CHARGING = 1, 2, 3

UNIFORMS_PER_DAY = 192


class Draws:
    """Sequential reader over a row of pre-drawn uniforms (wraps around if a day needs more)."""

    __slots__ = ("uniforms", "taken")

    def __init__(self, uniforms):
        self.uniforms = uniforms
        self.taken = 0

    def draw(self) -> float:
        x = self.uniforms[self.taken % len(self.uniforms)]
        self.taken += 1
        return x

    def between(self, low: float, high: float) -> float:
        return low + (high - low) * self.draw()


class VehicleActivity:
    """One vehicle's true state through time: it plans trips, drives them and charges."""

    __slots__ = ("index", "fleet", "powertrain", "odometer_km", "soc", "fuel", "lat", "lon", "energy_added_kwh",
                 "mode", "power_kw", "heading", "keyframes", "events", "free_at", "sessions", "usable_kwh",
                 "kwh_per_km", "litres_per_km", "tank_l", "speed_kmh", "charge_limit", "metro")

    def __init__(self, fleet: Fleet, index: int, sessions: list):
        self.index = index
        self.fleet = fleet
        self.powertrain = int(fleet.powertrain[index])
        self.odometer_km = float(fleet.odometer_start_km[index])
        self.soc = float(fleet.start_soc_pct[index]) if self.powertrain != C.ICE else 0.0
        self.fuel = float(fleet.start_fuel_pct[index]) if self.powertrain != C.BEV else 0.0
        self.lat = float(fleet.home_lat[index])
        self.lon = float(fleet.home_lon[index])
        self.energy_added_kwh = 0.0
        self.mode = PARKED
        self.power_kw = 0.0
        self.heading = float((index * 37) % 360)
        self.keyframes = []
        self.events = []  # (time, EVENT_*) not yet handed over
        self.free_at = fleet.start_s  # end of the last drive or charge
        self.sessions = sessions  # shared by the fleet: charging sessions for the truth
        self.usable_kwh = float(fleet.usable_capacity_kwh[index]) if self.powertrain != C.ICE else 0.0
        self.kwh_per_km = float(fleet.consumption_kwh_per_km[index]) if self.powertrain != C.ICE else 0.0
        self.litres_per_km = float(fleet.fuel_l_per_km[index]) if self.powertrain != C.BEV else 0.0
        self.tank_l = float(fleet.tank_capacity_l[index]) if self.powertrain != C.BEV else 1.0
        self.speed_kmh = float(fleet.average_speed_kmh[index])
        self.charge_limit = float(fleet.charge_limit_pct[index])
        self.metro = int(fleet.metro_index[index])
        self._keyframe(fleet.start_s - 1.0)

    # -- keyframe primitives -------------------------------------------------------
    def _keyframe(self, t: float) -> None:
        self.keyframes.append((t, self.odometer_km, self.soc, self.fuel, self.lat, self.lon, self.energy_added_kwh,
                               self.mode, self.power_kw, self.heading))

    def _hold(self, t: float) -> None:
        """Keyframe with the current state at ``t`` (end of a constant stretch)."""
        self._keyframe(t)

    # -- plans -----------------------------------------------------------------------
    def plan_day(self, day_start: float, weekday: bool, draws: Draws) -> list:
        """The day's trips from home: (departure, kind, lat, lon, km one way, dwell s)."""
        fleet, v = self.fleet, self.index
        idle = float(fleet.idle_day_probability[v]) + (0.0 if weekday else 0.07)
        if draws.draw() < idle:
            return []
        home_lat, home_lon = float(fleet.home_lat[v]), float(fleet.home_lon[v])
        trips = []
        latest_return = day_start + 21.5 * 3600

        def errand(t: float, min_km: float, max_km: float, min_dwell: float, max_dwell: float) -> float | None:
            km = draws.between(min_km, max_km)
            dwell = draws.between(min_dwell, max_dwell) * 60
            drive = km / self.speed_kmh * 3600 * 1.1
            if t + 2 * drive + dwell > latest_return:
                return None
            lat, lon = offset(home_lat, home_lon, km / 1.3, draws.between(0, 360))
            trips.append((t, "other", lat, lon, km, dwell))
            return t + 2 * drive + dwell

        if weekday and fleet.commuter[v] and draws.draw() > 0.08:
            departure = day_start + (float(fleet.departure_hour[v]) + draws.between(-0.3, 0.3)) * 3600
            km = float(fleet.commute_km[v]) * draws.between(0.97, 1.05)
            dwell = (float(fleet.hours_at_work[v]) + draws.between(-0.5, 0.5)) * 3600
            trips.append((departure, "work", float(fleet.work_lat[v]), float(fleet.work_lon[v]), km, dwell))
            if draws.draw() < 0.4:
                errand(day_start + draws.between(19.0, 20.5) * 3600, 2.0, 12.0, 15, 75)
        elif weekday:
            t = day_start + draws.between(8.0, 11.0) * 3600
            for _ in range(1 + int(draws.draw() * 3)):
                end = errand(t, 2.0, 22.0, 15, 120)
                if end is None:
                    break
                t = end + draws.between(0.5, 4.0) * 3600
        else:
            t = day_start + draws.between(8.5, 12.0) * 3600
            if draws.draw() < 0.45:
                end = errand(t, 25.0, 90.0, 60, 240)
                if end is not None and draws.draw() < 0.3:
                    errand(end + draws.between(0.5, 2.0) * 3600, 2.0, 10.0, 15, 60)
            else:
                for _ in range(1 + int(draws.draw() * 2)):
                    end = errand(t, 2.0, 18.0, 20, 150)
                    if end is None:
                        break
                    t = end + draws.between(1.0, 4.0) * 3600
        return trips

    # -- activity --------------------------------------------------------------------
    def simulate_day(self, trips: list, next_first_departure: float, day_start: float, draws: Draws) -> None:
        """Drive the planned trips, charge at work and at home (overnight until the next departure)."""
        fleet, v = self.fleet, self.index
        day_end = day_start + DAY
        home_lat, home_lon = float(fleet.home_lat[v]), float(fleet.home_lon[v])
        has_battery = self.powertrain != C.ICE
        last_arrival = None
        for i, (departure, kind, lat, lon, km, dwell) in enumerate(trips):
            t = max(departure, self.free_at + 60.0)
            if t > day_end - 3 * 3600:
                break
            arrival = self.drive_leg(t, lat, lon, km, day_end, draws)
            leave = arrival + dwell
            if kind == "work" and fleet.has_work_charger[v] and self.soc < 75.0:
                self.charge_ac(arrival, leave, min(11.0, float(fleet.ac_max_kw[v])), "work", day_end, False, draws)
            t = max(leave, self.free_at + 60.0)
            last_arrival = self.drive_leg(t, home_lat, home_lon, km, day_end, draws, must_finish=True)
            if (has_battery and fleet.has_home_charger[v] and self.soc < 30.0 and i + 1 < len(trips)
                    and trips[i + 1][0] - last_arrival > 3600):
                self.charge_ac(last_arrival, trips[i + 1][0], float(fleet.home_charger_kw[v]), "home", day_end,
                               False, draws)
        if has_battery and fleet.has_home_charger[v] and self.soc < self.charge_limit - 3.0 and (
                fleet.plugs_in_every_night[v] or self.soc < float(fleet.plug_in_below_soc_pct[v])):
            arrival = last_arrival if last_arrival is not None else day_start + draws.between(17.0, 22.0) * 3600
            arrival = max(arrival, self.free_at + 60.0)
            self.charge_ac(arrival, next_first_departure, float(fleet.home_charger_kw[v]), "home", day_end,
                           bool(fleet.scheduled_charging[v]), draws)

    def drive_leg(self, t: float, lat: float, lon: float, km: float, day_end: float, draws: Draws,
                  must_finish: bool = False) -> float:
        """Drive to (lat, lon), by way of a fast charger (BEV) or a fuel stop when low."""
        fleet, v = self.fleet, self.index
        if self.powertrain == C.BEV:
            need = km * self.kwh_per_km / self.usable_kwh * 100.0
            low = self.soc - need < 12.0 or (not fleet.has_home_charger[v] and self.soc < 25.0)
            if low and t < day_end - 2.5 * 3600:
                stations = fleet.public_stations[self.metro]
                distances = [distance_km(self.lat, self.lon, s[0], s[1]) for s in stations]
                k = int(np.argmin(distances))
                station_lat, station_lon = float(stations[k, 0]), float(stations[k, 1])
                station_kw = float(stations[k, 2])
                distance = distances[k]
                if distance > 8.0:
                    # away from the metro's stations: a highway fast charger on the way, on a
                    # 0.02 degree grid so that vehicles passing the same place share it
                    way_lat, way_lon = offset(self.lat, self.lon, 3.0, bearing(self.lat, self.lon, lat, lon))
                    station_lat, station_lon = round(way_lat / 0.02) * 0.02, round(way_lon / 0.02) * 0.02
                    station_kw = 150.0
                    distance = distance_km(self.lat, self.lon, station_lat, station_lon)
                t = self._drive(t, station_lat, station_lon, max(1.0, distance * 1.3), day_end, draws, False)
                t = self.charge_dc(t, station_kw, draws) + 60.0
                km = max(1.0, distance_km(station_lat, station_lon, lat, lon) * 1.3)
        elif self.fuel < 15.0:
            self._hold(t)
            self.fuel = draws.between(93.0, 100.0)
            self._keyframe(t + 240.0)
            t += 300.0
        return self._drive(t, lat, lon, km, day_end, draws, must_finish)

    def _drive(self, t: float, lat: float, lon: float, km: float, day_end: float, draws: Draws,
               must_finish: bool) -> float:
        duration = km / self.speed_kmh * 3600.0 * draws.between(0.9, 1.15)
        latest_arrival = day_end - 120.0  # a day's keyframes end at midnight
        if t + duration > latest_arrival:
            duration = max(30.0, latest_arrival - t)
        start_lat, start_lon, start_odometer = self.lat, self.lon, self.odometer_km
        self._hold(t)
        self.mode = DRIVING
        self.heading = bearing(start_lat, start_lon, lat, lon)
        self._keyframe(t + EPS)
        arrival = t + duration
        if self.powertrain == C.BEV:
            self.soc = max(0.5, self.soc - km * self.kwh_per_km / self.usable_kwh * 100.0)
        elif self.powertrain == C.ICE:
            self.fuel = max(0.5, self.fuel - km * self.litres_per_km / self.tank_l * 100.0)
        else:
            # PHEV: electric down to 12 %, then the engine for the rest of the way
            available_kwh = max(0.0, self.soc - 12.0) / 100.0 * self.usable_kwh
            need_kwh = km * self.kwh_per_km
            if need_kwh <= available_kwh:
                self.soc -= need_kwh / self.usable_kwh * 100.0
            else:
                electric_share = available_kwh / need_kwh if need_kwh > 0 else 0.0
                if electric_share > 0:
                    self.soc = min(self.soc, 12.0)
                    self.odometer_km = start_odometer + electric_share * km
                    self.lat = start_lat + electric_share * (lat - start_lat)
                    self.lon = start_lon + electric_share * (lon - start_lon)
                    self._keyframe(t + electric_share * duration)
                self.fuel = max(0.5, self.fuel - (1.0 - electric_share) * km * self.litres_per_km / self.tank_l * 100.0)
        self.odometer_km = start_odometer + km
        self.lat, self.lon = lat, lon
        self.mode = PARKED
        self._keyframe(arrival)
        self.events.append((arrival + draws.between(10.0, 90.0), EVENT_ARRIVAL))
        self.free_at = arrival
        return arrival

    def charge_ac(self, arrival: float, leave: float, kw: float, location: str, day_end: float,
                  scheduled: bool, draws: Draws) -> None:
        """Plug in after arriving, charge to the limit (or until unplugging), unplug before leaving."""
        if self.soc >= self.charge_limit - 2.0 or not kw > 0:
            return
        plugged_at = arrival + draws.between(60.0, 900.0)
        # a scheduled charger waits for the off-peak hours after midnight
        started_at = ((day_end + draws.between(0.0, 120.0)) if (scheduled and plugged_at < day_end)
                      else plugged_at + draws.between(20.0, 90.0))
        unplugged_at = leave - draws.between(60.0, 480.0)
        if unplugged_at - started_at < 900.0:
            return
        power_kw = kw * draws.between(0.92, 0.98)
        need_kwh = (self.charge_limit - self.soc) / 100.0 * self.usable_kwh
        ended_at = started_at + need_kwh / power_kw * 3600.0
        soc_start = self.soc
        if ended_at > unplugged_at - 60.0:
            ended_at = unplugged_at - 60.0
            energy_kwh = power_kw * (ended_at - started_at) / 3600.0
        else:
            energy_kwh = need_kwh
        self._plug_in(plugged_at, started_at, draws)
        self.power_kw = power_kw
        self.energy_added_kwh = 0.0
        self._keyframe(started_at + EPS)
        self.events.append((started_at + draws.between(5.0, 60.0), EVENT_CHARGING))
        self.soc = soc_start + energy_kwh / self.usable_kwh * 100.0
        self.energy_added_kwh = energy_kwh
        self.mode = PLUGGED
        self.power_kw = 0.0
        self._keyframe(ended_at)
        self.events.append((ended_at + draws.between(5.0, 60.0), EVENT_CHARGING))
        self._hold(unplugged_at)
        self.mode = PARKED
        self._keyframe(unplugged_at + EPS)
        self.events.append((unplugged_at + draws.between(5.0, 60.0), EVENT_CABLE))
        self.free_at = unplugged_at
        self.sessions.append((self.index, plugged_at, started_at, ended_at, unplugged_at, location, False,
                              soc_start, self.soc, energy_kwh, energy_kwh / ((ended_at - started_at) / 3600.0),
                              power_kw))

    def _plug_in(self, plugged_at: float, started_at: float, draws: Draws) -> None:
        """Parked until the plug-in, plugged in until the charge starts, then charging."""
        self._hold(plugged_at)
        self.mode = PLUGGED
        self._keyframe(plugged_at + EPS)
        self.events.append((plugged_at + draws.between(5.0, 60.0), EVENT_CABLE))
        self._hold(started_at)
        self.mode = CHARGING

    def charge_dc(self, arrival: float, station_kw: float, draws: Draws) -> float:
        """Fast charge to ~80-90 %, tapering above 80 %; returns when the car is unplugged."""
        target_soc = max(draws.between(78.0, 92.0), min(self.soc + 10.0, 95.0))
        peak_kw = min(station_kw, float(self.fleet.dc_max_kw[self.index])) * draws.between(0.88, 0.98)
        plugged_at = arrival + draws.between(60.0, 240.0)
        started_at = plugged_at + draws.between(30.0, 120.0)

        def power_at(soc: float) -> float:
            if soc < 80.0:
                return peak_kw
            return peak_kw * max(0.2, 1.0 - 0.8 * (soc - 80.0) / 20.0)

        soc_start = self.soc
        self._plug_in(plugged_at, started_at, draws)
        self.power_kw = power_at(self.soc)
        self.energy_added_kwh = 0.0
        self._keyframe(started_at + EPS)
        self.events.append((started_at + draws.between(5.0, 60.0), EVENT_CHARGING))
        t = started_at
        energy_kwh = 0.0
        max_power_kw = self.power_kw
        # the taper as steps: up to 80 % at full power, then 2 % at a time
        while self.soc < target_soc - 1e-9:
            power_kw = power_at(self.soc)
            max_power_kw = max(max_power_kw, power_kw)
            step_soc = min(80.0, target_soc) if self.soc < 80.0 else min(target_soc, self.soc + 2.0)
            step_kwh = (step_soc - self.soc) / 100.0 * self.usable_kwh
            t += step_kwh / power_kw * 3600.0
            energy_kwh += step_kwh
            self.soc = step_soc
            self.energy_added_kwh = energy_kwh
            done = self.soc >= target_soc - 1e-9
            self.power_kw = 0.0 if done else power_at(self.soc)
            self.mode = PLUGGED if done else CHARGING
            self._keyframe(t)
        ended_at = t
        self.events.append((ended_at + draws.between(5.0, 60.0), EVENT_CHARGING))
        unplugged_at = ended_at + draws.between(60.0, 600.0)
        self._hold(unplugged_at)
        self.mode = PARKED
        self._keyframe(unplugged_at + EPS)
        self.events.append((unplugged_at + draws.between(5.0, 60.0), EVENT_CABLE))
        self.free_at = unplugged_at
        self.sessions.append((self.index, plugged_at, started_at, ended_at, unplugged_at, "public", True, soc_start,
                              self.soc, energy_kwh, energy_kwh / ((ended_at - started_at) / 3600.0), max_power_kw))
        return unplugged_at

    # -- per-day hand-off --------------------------------------------------------------
    def take_day(self, day_start: float) -> tuple[list, list]:
        """Keyframes bracketing [day_start, day_start+DAY] and the day's events."""
        day_end = day_start + DAY
        keyframes = self.keyframes
        i = len(keyframes)
        while i > 0 and keyframes[i - 1][AT] > day_end:
            i -= 1
        # keyframes[i-1] is the last keyframe <= day_end; keyframes[0] is <= day_start by construction
        if i < len(keyframes):
            day_keyframes = keyframes[: i + 1]
        else:
            last = keyframes[-1]
            day_keyframes = keyframes + [(day_end + 1.0,) + tuple(last[1:])]
        self.keyframes = keyframes[i - 1:]
        today = [event for event in self.events if event[0] < day_end]
        self.events = [event for event in self.events if event[0] >= day_end]
        return day_keyframes, today
