"""The one Definitions object of the code location: every domain's definitions, jobs and shared resources."""

import os
from datetime import timedelta

import dagster as dg

# Domain modules, not their Definitions objects: a code location must hold exactly one at module scope.
from learning_pipeline.defs.autonomy import definitions as autonomy
from learning_pipeline.defs.autonomy.resources import default_autonomy_resource
from learning_pipeline.defs.bandit import definitions as bandit
from learning_pipeline.defs.events import definitions as events
from learning_pipeline.defs.ingest import definitions as ingest
from learning_pipeline.defs.ingest.resources import default_kafka_resource
from learning_pipeline.defs.models import definitions as models
from learning_pipeline.defs.models.resources import default_mlflow_resource
from learning_pipeline.defs.partitions import daily_partitions
from learning_pipeline.defs.resources import default_lake_resource
from learning_pipeline.defs.stats import definitions as stats
from learning_pipeline.defs.training import definitions as training

DATA_DOMAINS = (events, ingest, stats, bandit, training)


def _specs(*domains) -> list[dg.AssetSpec]:
    return [spec for domain in domains for assets in (domain.defs.assets or []) for spec in assets.specs]


MODEL_ASSET_KEYS = [spec.key for spec in _specs(models)]
DAILY_ASSET_KEYS = [spec.key for spec in _specs(*DATA_DOMAINS) if spec.partitions_def == daily_partitions]
LEARNING_ASSET_KEYS = [spec.key for spec in _specs(*DATA_DOMAINS, models) if spec.partitions_def is None]

daily_job = dg.define_asset_job(
    "daily_job",
    selection=dg.AssetSelection.assets(*DAILY_ASSET_KEYS),
    description="One UTC day: validate landed events, then every daily-partitioned asset built from them.",
)
learning_job = dg.define_asset_job(
    "learning_job",
    selection=dg.AssetSelection.assets(*LEARNING_ASSET_KEYS),
    description="Everything learned from all days: stats, posteriors, recommendations, routing, configs.",
)
learning_cycle_job = dg.define_asset_job(
    "learning_cycle_job",
    selection=dg.AssetSelection.assets(*MODEL_ASSET_KEYS),
    description="Train a candidate routing policy up to a day, evaluate it offline, gate it and register it.",
)


@dg.schedule(job=daily_job, cron_schedule="15 0 * * *", execution_timezone="UTC")
def daily_job_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Re-materializes the day that just ended, so yesterday's late events are included."""
    yesterday = (context.scheduled_execution_time - timedelta(days=1)).strftime("%Y-%m-%d")
    return dg.RunRequest(run_key=f"daily-{yesterday}", partition_key=yesterday)


# Runs the assets' automation conditions (stats windows and training data follow new days). Running by
# default, unlike Dagster's implicit sensor, so the loop turns on a fresh instance. Every 5 minutes by
# default: the followers batch up the landings in between instead of competing with the landing runs.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation_sensor",
    target=dg.AssetSelection.all(),
    minimum_interval_seconds=int(os.environ.get("LEARNING_PIPELINE_AUTOMATION_SECONDS", "300")),
    default_status=dg.DefaultSensorStatus.RUNNING,
)

defs = dg.Definitions.merge(
    *(domain.defs for domain in (*DATA_DOMAINS, models, autonomy)),
    dg.Definitions(
        jobs=[daily_job, learning_job, learning_cycle_job],
        schedules=[daily_job_schedule],
        sensors=[automation_sensor],
        resources={
            "lake": default_lake_resource(),
            "kafka": default_kafka_resource(),
            "mlflow": default_mlflow_resource(),
            "autonomy": default_autonomy_resource(),
        },
    ),
)
