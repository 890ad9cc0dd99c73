"""Landing files: windows per UTC day, gzip or plain, redeliveries and file-level faults.

Files go through ``pipelines.sources.landing_writer.write_landing_file`` like every source's.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from pipelines.sources.landing_writer import write_landing_file

from .ids import uuids

DAY_S = 86400.0

GARBAGE = (
    "HTTP/1.1 502 Bad Gateway",
    "<html><body><h1>504 Gateway Time-out</h1></body></html>",
    "null,null,null",
    "{{\"eventId\": oops",
    "event: VEHICLE_STATE data: <binary>",
    "\ufeff??",
)


WRITE_CHUNK_LINES = 4096


def _chunks(lines: list[str]):
    for i in range(0, len(lines), WRITE_CHUNK_LINES):
        yield "\n".join(lines[i:i + WRITE_CHUNK_LINES]) + "\n"


class LandingWriter:
    """Writes each day's windows as files, with the redeliveries queued for them and the
    file-level faults (out-of-order blocks, malformed lines); files are written on a thread pool."""

    def __init__(self, cfg, landing_dir: Path, t0: float, rng: np.random.Generator, plan, faults: list):
        self.cfg = cfg
        self.dir = Path(landing_dir)
        self.t0 = t0
        self.rng = rng
        self.plan = plan
        self.faults = faults  # shared with the truth
        self.pending: dict = {}  # (day, window) -> list of (line, kind, event_id, at, detail, vehicle)
        self.seq = 0
        self.malformed_seq = 0
        self.files = 0
        self.lines = 0
        self.malformed = 0
        self.duplicates = 0
        self.late = 0
        self.pool = ThreadPoolExecutor(max_workers=max(1, cfg.writer_threads))
        self.inflight: list[list[Future]] = []

    def redeliver(self, day: int, window: int, line: str, kind: str, event_id: str, at: float,
                  detail: str, vehicle: int) -> None:
        self.pending.setdefault((day, window), []).append((line, kind, event_id, at, detail, vehicle))

    def write_day(self, day: int, windows: list) -> None:
        cfg, rng = self.cfg, self.rng
        date = datetime.fromtimestamp(self.t0 + day * DAY_S, tz=timezone.utc).date()
        hours = 24 // cfg.files_per_day
        futures = []
        for window, own_lines in enumerate(windows):
            incoming = self.pending.pop((day, window), [])
            malformed_count = self.plan.malformed_files.get((day, window), 0) if self.plan.enabled else 0
            if not own_lines and not incoming and not malformed_count:
                continue
            name = f"deliveries-{date.isoformat()}T{window * hours:02d}-{self.seq:06d}.ndjson"
            self.seq += 1
            gzipped = rng.random() >= cfg.plain_file_share
            rel = f"{date.year:04d}/{date.month:02d}/{date.day:02d}/{name}{'.gz' if gzipped else ''}"
            lines = self._merge_redeliveries(list(own_lines), incoming, rel)
            self._shuffle_block(lines, rel)
            self._insert_malformed(lines, malformed_count, rel)
            self.files += 1
            self.lines += len(lines)
            futures.append(self.pool.submit(write_landing_file, self.dir, rel, _chunks(lines),
                                            gzip_level=cfg.gzip_level))
        self.inflight.append(futures)
        # bound memory: at most one earlier day of files still in flight
        while len(self.inflight) > 1:
            for future in self.inflight.pop(0):
                future.result()

    def _merge_redeliveries(self, lines: list, incoming: list, rel: str) -> list:
        """Late and duplicate deliveries go in at random places among the file's own lines."""
        if not incoming:
            return lines
        positions = np.sort(self.rng.integers(0, len(lines) + 1, size=len(incoming)))
        merged = []
        previous = 0
        for position, (line, kind, event_id, at, detail, vehicle) in zip(positions, incoming):
            merged.extend(lines[previous:position])
            merged.append(line)
            previous = position
            if kind == "LATE":
                self.late += 1
            else:
                self.duplicates += 1
            self.faults.append(dict(vehicle_id=None, kind=kind, at=at, detail=detail, odometer_before_km=None,
                                    odometer_after_km=None, event_id=event_id, file=rel, vehicle_index=vehicle))
        merged.extend(lines[previous:])
        return merged

    def _shuffle_block(self, lines: list, rel: str) -> None:
        rng = self.rng
        if self.plan.enabled and len(lines) >= 6 and rng.random() < self.plan.out_of_order_rate:
            size = max(3, int(len(lines) * rng.uniform(0.05, 0.3)))
            start = int(rng.integers(0, len(lines) - size + 1))
            block = lines[start:start + size]
            permutation = rng.permutation(size)
            lines[start:start + size] = [block[i] for i in permutation]
            self.faults.append(dict(vehicle_id=None, kind="OUT_OF_ORDER", at=None,
                                    detail=f"lines {start + 1}-{start + size} shuffled", odometer_before_km=None,
                                    odometer_after_km=None, event_id=None, file=rel))

    def _insert_malformed(self, lines: list, count: int, rel: str) -> None:
        """Truncated copies of deliveries (two in three) or garbage text, at random lines."""
        rng = self.rng
        rows: list = []
        for _ in range(count):
            candidates = [i for i in range(min(len(lines), 400)) if lines[i].startswith('{"eventId":"')]
            self.malformed_seq += 1
            if candidates and self.malformed_seq % 3 != 0:
                source = lines[candidates[int(rng.integers(0, len(candidates)))]]
                cut = int(len(source) * rng.uniform(0.3, 0.9))
                bad = source[:cut]
                event_id = source[12:48]
                detail = f"truncated JSON ({cut} of {len(source)} chars); the full delivery is also landed"
            else:
                bad = GARBAGE[int(rng.integers(0, len(GARBAGE)))]
                event_id = None
                detail = "garbage text"
            position = int(rng.integers(0, len(lines) + 1))
            lines.insert(position, bad)
            self.malformed += 1
            for row in rows:  # earlier malformed lines of this file move down
                if row["line_number"] >= position + 1:
                    row["line_number"] += 1
            rows.append(dict(vehicle_id=None, kind="MALFORMED", at=None, detail=detail, odometer_before_km=None,
                             odometer_after_km=None, event_id=event_id, file=rel, line_number=position + 1))
        self.faults.extend(rows)

    def close(self) -> None:
        for futures in self.inflight:
            for future in futures:
                future.result()
        self.inflight = []
        self.pool.shutdown(wait=True)

def redeliver_duplicates(writer: LandingWriter, cfg, fleet, formats, day: int, readings, state_lines,
                         event_id: np.ndarray, redeliveries, window: np.ndarray, rng_ids: np.random.Generator,
                         rng: np.random.Generator) -> None:
    """Re-send the duplicates later (same eventId), half of them with a new deliveryId and deliveredAt."""
    rows = np.nonzero(redeliveries.duplicate)[0]
    if not len(rows):
        return
    files_per_day = cfg.files_per_day
    window_s = DAY_S / files_per_day
    new_delivery_id = uuids(rng_ids, len(rows))
    for j, i in enumerate(rows):
        v = int(readings.vehicle[i])
        target_day = day + (0 if rng.random() < 0.5 else int(rng.integers(1, 6)))
        target_day = min(target_day, cfg.days - 1)
        own_window = int(window[i])
        target_window = int(rng.integers(0, files_per_day))
        if target_day == day and target_window <= own_window:
            target_window = own_window + 1
        if target_window >= files_per_day:
            if target_day + 1 < cfg.days:
                target_day, target_window = target_day + 1, 0
            else:
                continue  # past the end of the run
        if rng.random() < 0.5:
            line = state_lines.lines[i]
            detail = "identical re-delivery"
        else:
            delivered_ms = int((fleet.start_s + target_day * DAY_S + (target_window + rng.random()) * window_s) * 1000)
            delivered_ms = max(delivered_ms, int(redeliveries.delivered_ms[i]) + 1000)
            number = delivered_ms // 1000 if formats.delivered_at_in_seconds[v] else delivered_ms
            line = (state_lines.prefix[int(i)] + str(new_delivery_id[j]) + '","deliveredAt":' + str(number)
                    + state_lines.tail[int(i)])
            detail = "retry with a new deliveryId and deliveredAt"
        writer.redeliver(target_day, target_window, line, "DUPLICATE", str(event_id[i]), float(readings.at[i]),
                         detail, v)


def redeliver_late(writer: LandingWriter, cfg, fleet, day: int, readings, state_lines, event_id: np.ndarray,
                   redeliveries) -> None:
    window_s = DAY_S / cfg.files_per_day
    for i in np.nonzero(redeliveries.late)[0]:
        late_day = int(redeliveries.late_day[i])
        window = int(np.clip((redeliveries.delivered_ms[i] / 1000.0 - (fleet.start_s + late_day * DAY_S)) // window_s,
                             0, cfg.files_per_day - 1))
        writer.redeliver(late_day, window, state_lines.lines[i], "LATE", str(event_id[i]), float(readings.at[i]),
                         f"delivered {late_day - day} day(s) late", int(readings.vehicle[i]))


def delivery_window(delivered_ms: np.ndarray, day_start: float, files_per_day: int) -> np.ndarray:
    """The day's file (window) a delivery lands in, by its deliveredAt."""
    window_s = DAY_S / files_per_day
    return np.clip(((delivered_ms / 1000.0 - day_start) // window_s).astype(np.int64), 0, files_per_day - 1)


def day_windows(on_time_ms: np.ndarray, on_time_lines: list, other_ms: list, other_lines: list,
                day_start: float, files_per_day: int) -> list:
    """The lines of each window of the day, sorted by deliveredAt (ties in the order given)."""
    delivered_ms = np.concatenate([on_time_ms, np.array(other_ms, dtype=np.int64)])
    lines = on_time_lines + other_lines
    window = delivery_window(delivered_ms, day_start, files_per_day)
    order = np.lexsort((np.arange(len(delivered_ms)), delivered_ms))
    windows = [[] for _ in range(files_per_day)]
    for i in order:
        windows[window[i]].append(lines[i])
    return windows
