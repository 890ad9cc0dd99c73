"""The one Definitions object: every asset, check, job, schedule and sensor of Fleetlake."""

from __future__ import annotations

import dagster as dg

import assets
from assets.marts.core import quality_results_asset
from pipelines.disconnections import disconnection_sensor
from pipelines.erasure import erase_job, erase_run_cleanup
from pipelines.jobs import ingest_job, marts_job, readings_job
from pipelines.location_retention import coarsen_locations_daily, coarsen_locations_job
from pipelines.sensors import landing_sensor, stale_readings_sensor
from pipelines.sources.smartcar.asset import smartcar_pull, smartcar_pull_job, smartcar_pull_schedule
from pipelines.sources.smartcar.resource import SmartcarResource
from storage.resources import LakeResource, WarehouseResource, data_dir_setting

def default_resources() -> dict:
    data_dir = data_dir_setting()
    return {"lake": LakeResource(data_dir=data_dir), "warehouse": WarehouseResource(data_dir=data_dir)}


def all_assets() -> list[dg.AssetsDefinition]:
    """Every asset under assets/, and `marts.quality_results` after every asset with checks."""
    found = [a for a in dg.load_assets_from_package_module(assets) if isinstance(a, dg.AssetsDefinition)]
    checked = sorted({key for a in found if a.check_specs for key in a.keys}, key=lambda k: k.to_user_string())
    return [*found, quality_results_asset(checked)]


def build_definitions(resources: dict | None = None) -> dg.Definitions:
    """The Definitions, with the given resources (tests pass ones on a temporary data dir)."""
    return dg.Definitions(
        assets=[*all_assets(), smartcar_pull],  # assets/, and the sources' assets
        jobs=[ingest_job, readings_job, marts_job, smartcar_pull_job, coarsen_locations_job, erase_job],
        schedules=[smartcar_pull_schedule, coarsen_locations_daily],  # marts declare their own automation (MART_AUTOMATION)
        sensors=[landing_sensor, stale_readings_sensor, disconnection_sensor, erase_run_cleanup],
        # Smartcar's settings come from the environment unless the caller gives its own.
        resources={"smartcar": SmartcarResource.from_environment(), **(resources or default_resources())},
        # Polars and DuckDB use every core inside one process; steps run one after another,
        # which also keeps the DuckDB file to one writer within a run.
        executor=dg.in_process_executor,
    )


defs = build_definitions()
