"""Acting on a Smartcar disconnection promptly: a sensor on the connection records.

A vehicle that `GET /v3/connections` no longer lists, or whose access was revoked, is
marked DISCONNECTED by the pull, which from then on no longer pulls it ("stop collecting").
With `FLEETLAKE_ON_DISCONNECT=erase` the sensor also launches `erase_job` for every
vehicle disconnected at least `FLEETLAKE_DISCONNECT_GRACE_HOURS` ago (default 0: at once).
The run config names no vehicle (`disconnected_for_hours`: the job finds them itself), and
the run key is a keyed hash of the vehicles, so nothing of them is in the clear in the
instance.
"""

import hashlib
import os

import dagster as dg

from pipelines.erasure import disconnected_vehicles, erase_job
from storage.erased_record import VEHICLE, ErasedRecord
from storage.resources import LakeResource

ON_DISCONNECT_ENV, GRACE_ENV = "FLEETLAKE_ON_DISCONNECT", "FLEETLAKE_DISCONNECT_GRACE_HOURS"
STOP, ERASE = "stop", "erase"


def on_disconnect() -> tuple[str, float]:
    """The configured action (`stop`, the default, or `erase`) and grace period in hours."""
    action = os.getenv(ON_DISCONNECT_ENV, STOP).strip().lower() or STOP
    if action not in (STOP, ERASE):
        raise ValueError(f"{ON_DISCONNECT_ENV} must be {STOP!r} or {ERASE!r}")
    grace = float(os.getenv(GRACE_ENV, "0") or 0)
    if grace < 0:
        raise ValueError(f"{GRACE_ENV} must be 0 or more hours")
    return action, grace


@dg.sensor(job=erase_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.STOPPED)
def disconnection_sensor(context: dg.SensorEvaluationContext, lake: LakeResource):
    """Launch an erasure of the vehicles disconnected longer than the grace period, when
    configured to erase (FLEETLAKE_ON_DISCONNECT=erase); else the pull only stops collecting."""
    action, grace = on_disconnect()
    if action == STOP:
        return dg.SkipReason("configured to stop collecting only: disconnected vehicles are no longer pulled")
    due = disconnected_vehicles(lake, grace)
    if not due:
        return dg.SkipReason(f"no vehicle disconnected for {grace:g} hours or more")
    hashes = sorted(ErasedRecord(lake.root).hashes(VEHICLE, due).values())
    key = hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:24]
    return dg.RunRequest(run_key=f"erase-disconnected-{key}",
                         run_config={"ops": {"erase_vehicles": {"config": {"disconnected_for_hours": grace}}}},
                         tags={"fleetlake/disconnected_vehicles": str(len(due))})
