"""Per-vehicle driving and charging, as piecewise-linear keyframes in absolute time.

A vehicle's true state between two keyframes is the linear interpolation of the
"linear" channels (odometer, SoC, fuel, position, energy added) and the value of the
earlier keyframe for the "step" channels (mode, power, heading). Everything is decided
from a block of pre-drawn uniforms per vehicle-day, so the result is deterministic.
"""
from __future__ import annotations

import math

import numpy as np

from . import catalog as C
from .fleet import DAY, Fleet
from .geo import bearing, distance_km, offset

# keyframe columns
T, ODO, SOC, FUEL, LAT, LON, EADD, MODE, POWER, HEAD = range(10)
N_COLS = 10
EPS = 1e-3
PARKED, DRIVING, PLUGGED, CHARGING = 0, 1, 2, 3

# trigger codes of event-driven readings
TRIG_NONE, TRIG_ODO, TRIG_CABLE, TRIG_CHARGING = 0, 1, 2, 3

UNIFORMS_PER_DAY = 192


class Draws:
    """Sequential reader over a row of pre-drawn uniforms."""

    __slots__ = ("u_", "i")

    def __init__(self, row):
        self.u_ = row
        self.i = 0

    def u(self) -> float:
        x = self.u_[self.i % len(self.u_)]
        self.i += 1
        return x

    def uni(self, a: float, b: float) -> float:
        return a + (b - a) * self.u()


class VehicleSim:
    __slots__ = ("v", "f", "pt", "odo", "soc", "fuel", "lat", "lon", "eadd", "mode", "power",
                 "head", "kf", "events", "t_free", "sessions", "usable", "cons", "lpk", "tank",
                 "speed", "limit", "metro")

    def __init__(self, fleet: Fleet, v: int, sessions: list):
        f = fleet
        self.v = v
        self.f = f
        self.pt = int(f.powertrain[v])
        self.odo = float(f.odo_start_km[v])
        self.soc = float(f.soc0[v]) if self.pt != C.ICE else 0.0
        self.fuel = float(f.fuel0[v]) if self.pt != C.BEV else 0.0
        self.lat = float(f.home_lat[v])
        self.lon = float(f.home_lon[v])
        self.eadd = 0.0
        self.mode = PARKED
        self.power = 0.0
        self.head = float((v * 37) % 360)
        self.kf = []
        self.events = []
        self.t_free = f.t0
        self.sessions = sessions
        self.usable = float(f.usable_kwh[v]) if self.pt != C.ICE else 0.0
        self.cons = float(f.cons_kwh_per_km[v]) if self.pt != C.ICE else 0.0
        self.lpk = float(f.fuel_l_per_km[v]) if self.pt != C.BEV else 0.0
        self.tank = float(f.tank_l[v]) if self.pt != C.BEV else 1.0
        self.speed = float(f.speed_kmh[v])
        self.limit = float(f.charge_limit[v])
        self.metro = int(f.metro[v])
        self._kf(f.t0 - 1.0)

    # -- keyframe primitives -------------------------------------------------------
    def _kf(self, t: float) -> None:
        self.kf.append((t, self.odo, self.soc, self.fuel, self.lat, self.lon, self.eadd,
                        self.mode, self.power, self.head))

    def _hold(self, t: float) -> None:
        """Keyframe with the current state at ``t`` (end of a constant stretch)."""
        self._kf(t)

    # -- plans -----------------------------------------------------------------------
    def plan_day(self, day_start: float, weekday: bool, r: Draws) -> list:
        f, v = self.f, self.v
        idle = float(f.idle_prob[v]) + (0.0 if weekday else 0.07)
        if r.u() < idle:
            return []
        hlat, hlon = float(f.home_lat[v]), float(f.home_lon[v])
        exc = []
        latest_return = day_start + 21.5 * 3600

        def errand(t: float, lo_km: float, hi_km: float, dw_lo: float, dw_hi: float) -> float | None:
            km = r.uni(lo_km, hi_km)
            dwell = r.uni(dw_lo, dw_hi) * 60
            drive = km / self.speed * 3600 * 1.1
            if t + 2 * drive + dwell > latest_return:
                return None
            la, lo = offset(hlat, hlon, km / 1.3, r.uni(0, 360))
            exc.append((t, "other", la, lo, km, dwell))
            return t + 2 * drive + dwell

        if weekday and f.commuter[v] and r.u() > 0.08:
            dep = day_start + (float(f.dep_hour[v]) + r.uni(-0.3, 0.3)) * 3600
            km = float(f.commute_km[v]) * r.uni(0.97, 1.05)
            dwell = (float(f.work_hours[v]) + r.uni(-0.5, 0.5)) * 3600
            exc.append((dep, "work", float(f.work_lat[v]), float(f.work_lon[v]), km, dwell))
            if r.u() < 0.4:
                errand(day_start + r.uni(19.0, 20.5) * 3600, 2.0, 12.0, 15, 75)
        elif weekday:
            t = day_start + r.uni(8.0, 11.0) * 3600
            for _ in range(1 + int(r.u() * 3)):
                end = errand(t, 2.0, 22.0, 15, 120)
                if end is None:
                    break
                t = end + r.uni(0.5, 4.0) * 3600
        else:
            t = day_start + r.uni(8.5, 12.0) * 3600
            if r.u() < 0.45:
                end = errand(t, 25.0, 90.0, 60, 240)
                if end is not None and r.u() < 0.3:
                    errand(end + r.uni(0.5, 2.0) * 3600, 2.0, 10.0, 15, 60)
            else:
                for _ in range(1 + int(r.u() * 2)):
                    end = errand(t, 2.0, 18.0, 20, 150)
                    if end is None:
                        break
                    t = end + r.uni(1.0, 4.0) * 3600
        return exc

    # -- activity --------------------------------------------------------------------
    def simulate_day(self, plan: list, next_first_dep: float, day_start: float, r: Draws) -> None:
        f, v = self.f, self.v
        day_end = day_start + DAY
        hlat, hlon = float(f.home_lat[v]), float(f.home_lon[v])
        ev = self.pt != C.ICE
        last_arrival = None
        for i, (dep, kind, la, lo, km, dwell) in enumerate(plan):
            t = max(dep, self.t_free + 60.0)
            if t > day_end - 3 * 3600:
                break
            arr = self.drive_leg(t, la, lo, km, day_end, r)
            leave = arr + dwell
            if kind == "work" and f.work_charger[v] and self.soc < 75.0:
                self.charge_ac(arr, leave, min(11.0, float(f.ac_max_kw[v])), "work", day_end, False, r)
            t = max(leave, self.t_free + 60.0)
            last_arrival = self.drive_leg(t, hlat, hlon, km, day_end, r, must_finish=True)
            if (ev and f.has_home_charger[v] and self.soc < 30.0 and i + 1 < len(plan)
                    and plan[i + 1][0] - last_arrival > 3600):
                self.charge_ac(last_arrival, plan[i + 1][0], float(f.home_kw[v]), "home", day_end, False, r)
        if ev and f.has_home_charger[v] and self.soc < self.limit - 3.0 and (
                f.plug_always[v] or self.soc < float(f.plug_threshold[v])):
            arr = last_arrival if last_arrival is not None else day_start + r.uni(17.0, 22.0) * 3600
            arr = max(arr, self.t_free + 60.0)
            self.charge_ac(arr, next_first_dep, float(f.home_kw[v]), "home", day_end,
                           bool(f.scheduled[v]), r)

    def drive_leg(self, t: float, la: float, lo: float, km: float, day_end: float, r: Draws,
                  must_finish: bool = False) -> float:
        f, v = self.f, self.v
        if self.pt == C.BEV:
            need = km * self.cons / self.usable * 100.0
            low = self.soc - need < 12.0 or (not f.has_home_charger[v] and self.soc < 25.0)
            if low and t < day_end - 2.5 * 3600:
                st = f.stations[self.metro]
                dists = [distance_km(self.lat, self.lon, s[0], s[1]) for s in st]
                k = int(np.argmin(dists))
                slat, slon, skw = float(st[k, 0]), float(st[k, 1]), float(st[k, 2])
                dist = dists[k]
                if dist > 8.0:
                    # away from the metro's stations: a highway fast charger on the way, on a
                    # 0.02 degree grid so that vehicles passing the same place share it
                    blat, blon = offset(self.lat, self.lon, 3.0, bearing(self.lat, self.lon, la, lo))
                    slat, slon, skw = round(blat / 0.02) * 0.02, round(blon / 0.02) * 0.02, 150.0
                    dist = distance_km(self.lat, self.lon, slat, slon)
                t = self._drive(t, slat, slon, max(1.0, dist * 1.3), day_end, r, False)
                t = self.charge_dc(t, skw, r) + 60.0
                km = max(1.0, distance_km(slat, slon, la, lo) * 1.3)
        elif self.fuel < 15.0:
            self._hold(t)
            self.fuel = r.uni(93.0, 100.0)
            self._kf(t + 240.0)
            t += 300.0
        return self._drive(t, la, lo, km, day_end, r, must_finish)

    def _drive(self, t: float, la: float, lo: float, km: float, day_end: float, r: Draws,
               must_finish: bool) -> float:
        dur = km / self.speed * 3600.0 * r.uni(0.9, 1.15)
        limit = day_end - 120.0
        if t + dur > limit:
            dur = max(30.0, limit - t)
        lat0, lon0, odo0 = self.lat, self.lon, self.odo
        self._hold(t)
        self.mode = DRIVING
        self.head = bearing(lat0, lon0, la, lo)
        self._kf(t + EPS)
        t_arr = t + dur
        if self.pt == C.BEV:
            self.soc = max(0.5, self.soc - km * self.cons / self.usable * 100.0)
        elif self.pt == C.ICE:
            self.fuel = max(0.5, self.fuel - km * self.lpk / self.tank * 100.0)
        else:
            avail = max(0.0, self.soc - 12.0) / 100.0 * self.usable
            need = km * self.cons
            if need <= avail:
                self.soc -= need / self.usable * 100.0
            else:
                frac = avail / need if need > 0 else 0.0
                if frac > 0:
                    self.soc = min(self.soc, 12.0)
                    self.odo = odo0 + frac * km
                    self.lat = lat0 + frac * (la - lat0)
                    self.lon = lon0 + frac * (lo - lon0)
                    self._kf(t + frac * dur)
                self.fuel = max(0.5, self.fuel - (1.0 - frac) * km * self.lpk / self.tank * 100.0)
        self.odo = odo0 + km
        self.lat, self.lon = la, lo
        self.mode = PARKED
        self._kf(t_arr)
        self.events.append((t_arr + r.uni(10.0, 90.0), TRIG_ODO))
        self.t_free = t_arr
        return t_arr

    def charge_ac(self, t_arr: float, t_leave: float, kw: float, loc: str, day_end: float,
                  scheduled: bool, r: Draws) -> None:
        if self.soc >= self.limit - 2.0 or not kw > 0:
            return
        tp = t_arr + r.uni(60.0, 900.0)
        ts = (day_end + r.uni(0.0, 120.0)) if (scheduled and tp < day_end) else tp + r.uni(20.0, 90.0)
        tu = t_leave - r.uni(60.0, 480.0)
        if tu - ts < 900.0:
            return
        p = kw * r.uni(0.92, 0.98)
        need = (self.limit - self.soc) / 100.0 * self.usable
        te = ts + need / p * 3600.0
        soc0 = self.soc
        if te > tu - 60.0:
            te = tu - 60.0
            e = p * (te - ts) / 3600.0
        else:
            e = need
        self._hold(tp)
        self.mode = PLUGGED
        self._kf(tp + EPS)
        self.events.append((tp + r.uni(5.0, 60.0), TRIG_CABLE))
        self._hold(ts)
        self.mode = CHARGING
        self.power = p
        self.eadd = 0.0
        self._kf(ts + EPS)
        self.events.append((ts + r.uni(5.0, 60.0), TRIG_CHARGING))
        self.soc = soc0 + e / self.usable * 100.0
        self.eadd = e
        self.mode = PLUGGED
        self.power = 0.0
        self._kf(te)
        self.events.append((te + r.uni(5.0, 60.0), TRIG_CHARGING))
        self._hold(tu)
        self.mode = PARKED
        self._kf(tu + EPS)
        self.events.append((tu + r.uni(5.0, 60.0), TRIG_CABLE))
        self.t_free = tu
        self.sessions.append((self.v, tp, ts, te, tu, loc, False, soc0, self.soc, e,
                              e / ((te - ts) / 3600.0), p))

    def charge_dc(self, t_arr: float, station_kw: float, r: Draws) -> float:
        target = max(r.uni(78.0, 92.0), min(self.soc + 10.0, 95.0))
        pmax = min(station_kw, float(self.f.dc_max_kw[self.v])) * r.uni(0.88, 0.98)
        tp = t_arr + r.uni(60.0, 240.0)
        ts = tp + r.uni(30.0, 120.0)

        def pw(soc: float) -> float:
            if soc < 80.0:
                return pmax
            return pmax * max(0.2, 1.0 - 0.8 * (soc - 80.0) / 20.0)

        soc0 = self.soc
        self._hold(tp)
        self.mode = PLUGGED
        self._kf(tp + EPS)
        self.events.append((tp + r.uni(5.0, 60.0), TRIG_CABLE))
        self._hold(ts)
        self.mode = CHARGING
        self.power = pw(self.soc)
        self.eadd = 0.0
        self._kf(ts + EPS)
        self.events.append((ts + r.uni(5.0, 60.0), TRIG_CHARGING))
        t = ts
        e = 0.0
        pmax_seen = self.power
        while self.soc < target - 1e-9:
            p = pw(self.soc)
            pmax_seen = max(pmax_seen, p)
            nxt = min(80.0, target) if self.soc < 80.0 else min(target, self.soc + 2.0)
            de = (nxt - self.soc) / 100.0 * self.usable
            t += de / p * 3600.0
            e += de
            self.soc = nxt
            self.eadd = e
            done = self.soc >= target - 1e-9
            self.power = 0.0 if done else pw(self.soc)
            self.mode = PLUGGED if done else CHARGING
            self._kf(t)
        te = t
        self.events.append((te + r.uni(5.0, 60.0), TRIG_CHARGING))
        tu = te + r.uni(60.0, 600.0)
        self._hold(tu)
        self.mode = PARKED
        self._kf(tu + EPS)
        self.events.append((tu + r.uni(5.0, 60.0), TRIG_CABLE))
        self.t_free = tu
        self.sessions.append((self.v, tp, ts, te, tu, "public", True, soc0, self.soc, e,
                              e / ((te - ts) / 3600.0), pmax_seen))
        return tu

    # -- per-day hand-off --------------------------------------------------------------
    def take_day(self, day_start: float) -> tuple[list, list]:
        """Keyframes bracketing [day_start, day_start+DAY] and the day's events."""
        day_end = day_start + DAY
        kf = self.kf
        i = len(kf)
        while i > 0 and kf[i - 1][T] > day_end:
            i -= 1
        # kf[i-1] is the last keyframe <= day_end; kf[0] is <= day_start by construction
        if i < len(kf):
            seg = kf[: i + 1]
        else:
            last = kf[-1]
            seg = kf + [(day_end + 1.0,) + tuple(last[1:])]
        self.kf = kf[i - 1:]
        ev = self.events
        today = [e for e in ev if e[0] < day_end]
        self.events = [e for e in ev if e[0] >= day_end]
        return seg, today
