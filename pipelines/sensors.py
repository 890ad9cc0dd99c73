"""Sensors: new landing files start an ingest; days whose raw data changed get their readings rebuilt."""


import hashlib

import dagster as dg

from assets.raw import unseen_landing_files
from storage.layout import RawLayout
from assets.readings import stale_days
from pipelines.jobs import ingest_job, readings_job
from storage.resources import LakeResource


@dg.sensor(job=ingest_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED)
def landing_sensor(context: dg.SensorEvaluationContext, lake: LakeResource):
    """Request an ingest when landing holds files (or versions of files) not yet ingested."""
    new = [(relative, stat.st_size, stat.st_mtime_ns) for _, relative, stat in unseen_landing_files(RawLayout(lake))]
    if not new:
        return dg.SkipReason("no new landing files")
    digest = hashlib.sha256(repr(sorted(new)).encode()).hexdigest()[:16]
    return dg.RunRequest(run_key=f"landing-{digest}", tags={"fleetlake/new_files": str(len(new))})


@dg.sensor(job=readings_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED)
def stale_readings_sensor(context: dg.SensorEvaluationContext, lake: LakeResource):
    """Request a readings run for each day whose committed raw signals changed."""
    day_seqs = RawLayout(lake).day_seqs()
    requests = [dg.RunRequest(run_key=f"readings-{day}-{day_seqs[day]}", partition_key=day.isoformat())
                for day in stale_days(lake)]
    return requests or dg.SkipReason("every day's readings are up to date")

