"""The pull as a Dagster asset, with a schedule that is off until turned on."""

import dagster as dg

from pipelines.sources.smartcar.client import CredentialsRejected
from pipelines.sources.smartcar.pull import pull_round
from pipelines.sources.smartcar.resource import SmartcarResource
from storage.layout import SmartcarLayout
from storage.resources import LakeResource


class PullConfig(dg.Config):
    min_interval_minutes: float = 30.0  # a vehicle pulled more recently is skipped; 0 pulls all now


@dg.asset(key=["smartcar_pull"], group_name="sources", kinds={"smartcar"},
          description="One round of pulling every connected vehicle's signals from Smartcar's API v3 into "
                      "landing (and the connection records into the lake), within Smartcar's limits.")
def smartcar_pull(context: dg.AssetExecutionContext, config: PullConfig, lake: LakeResource,
                  smartcar: SmartcarResource) -> dg.MaterializeResult:
    client = smartcar.client()
    try:
        report = pull_round(client, lake.landing, SmartcarLayout(lake), smartcar.limits(config.min_interval_minutes),
                            smartcar.bucket())
    except CredentialsRejected as error:
        raise dg.Failure(description=f"Smartcar refused the application's credentials ({error.status} "
                                     f"{error.code or error.type}); check SMARTCAR_CLIENT_ID and "
                                     "SMARTCAR_CLIENT_SECRET") from None
    finally:
        client.close()
    for line in report.lines():
        context.log.info(line)
    return dg.MaterializeResult(metadata=report.metadata())


smartcar_pull_job = dg.define_asset_job("smartcar_pull_job", selection=dg.AssetSelection.assets(smartcar_pull),
                                        description="Pull connected vehicles' signals from Smartcar into landing.")

smartcar_pull_schedule = dg.ScheduleDefinition(
    name="smartcar_pull_every_30_minutes", job=smartcar_pull_job, cron_schedule="*/30 * * * *",
    execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.STOPPED,
    description="A pull round every 30 minutes (Smartcar's advice); the round itself keeps within the limits.")
