"""Deterministic simulated fleet that lands Smartcar webhook deliveries (payload 4.0).

    from pipelines.sources.simulator import SimulationConfig, simulate_fleet
    summary = simulate_fleet(SimulationConfig(), landing_dir=..., truth_dir=...)

Landing files: ``landing_dir/YYYY/MM/DD/deliveries-YYYY-MM-DDTHH-NNNNNN.ndjson[.gz]``.
Ground truth (never read by the pipeline): Parquet files + ``summary.json`` in ``truth_dir``.
"""
from .config import SimulationConfig, SimulationSummary
from .engine import simulate_fleet

__all__ = ["SimulationConfig", "SimulationSummary", "simulate_fleet"]
