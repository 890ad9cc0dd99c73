"""Configuration and result types of the simulated fleet."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. The defaults are the "default simulated fleet"."""

    seed: int = 7
    vehicles: int = 50
    days: int = 30
    start: date = date(2026, 9, 1)
    interval_minutes: int = 15
    faults: bool = True
    # Reading cadence while the car is asleep (parked or plugged-in idle). None: every 1-2 h
    # (per vehicle); set it to interval_minutes for a reading every interval all day long.
    asleep_interval_minutes: int | None = None
    # Files per UTC day (the day is cut into this many equal windows, one file each).
    files_per_day: int = 4
    # Share of landing files written uncompressed (".ndjson"); the rest are ".ndjson.gz".
    plain_file_share: float = 0.2
    # gzip level of ".ndjson.gz" files (1 fastest ... 9 smallest).
    gzip_level: int = 5
    # Threads used to compress and write files (output bytes never depend on it).
    writer_threads: int = 2

    def __post_init__(self) -> None:
        if self.vehicles < 1:
            raise ValueError("vehicles must be >= 1")
        if self.days < 1:
            raise ValueError("days must be >= 1")
        if not 1 <= self.interval_minutes <= 720:
            raise ValueError("interval_minutes must be in 1..720")
        if self.asleep_interval_minutes is not None and self.asleep_interval_minutes < 1:
            raise ValueError("asleep_interval_minutes must be >= 1")
        if self.files_per_day not in (1, 2, 3, 4, 6, 8, 12, 24):
            raise ValueError("files_per_day must divide 24")
        if not 0.0 <= self.plain_file_share <= 1.0:
            raise ValueError("plain_file_share must be in [0, 1]")
        if not 1 <= self.gzip_level <= 9:
            raise ValueError("gzip_level must be in 1..9")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["start"] = self.start.isoformat()
        return d


@dataclass(frozen=True)
class SimulationSummary:
    """Counts of what one simulation run wrote.

    ``lines == deliveries + duplicates + malformed``; ``deliveries`` counts distinct
    event ids (VEHICLE_STATE + VEHICLE_ERROR + VERIFY).
    """

    files: int
    lines: int
    deliveries: int
    vehicle_state: int
    vehicle_error: int
    verify: int
    duplicates: int
    late: int
    malformed: int
    signals: int
    signal_errors: int
    vehicles: int
    days: int
    charging_sessions: int
    faults: dict = field(default_factory=dict)
    landing_dir: str = ""
    truth_dir: str = ""

    def to_dict(self) -> dict:
        return asdict(self)
