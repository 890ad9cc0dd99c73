"""The daily run that coarsens precise locations older than the retention in the lake
(assets/location_coarsening.py)."""

import dagster as dg

from assets.location_coarsening import coarsened_locations

coarsen_locations_job = dg.define_asset_job(
    "coarsen_locations_job", selection=dg.AssetSelection.assets(coarsened_locations),
    description="Coarsen the lake's precise coordinates older than the retention (default 30 days).")

# On by default: the retention is a promise of the privacy contract, not an option to opt in
# to. It runs where the Dagster daemon runs (`dagster dev`); without one, launch the job.
coarsen_locations_daily = dg.ScheduleDefinition(
    name="coarsen_old_locations_daily", job=coarsen_locations_job, cron_schedule="30 3 * * *",
    execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day at 03:30 UTC: precise coordinates older than the retention become the marts' "
                "coarse area in the lake's tables.")
