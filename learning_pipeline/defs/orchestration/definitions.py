"""Jobs over the data domains, the daily schedule and the automation sensor. Assets are selected by their
grain tag (`ONE_DAY` / `ALL_DAYS`, see defs/partitions.py), so a new asset joins its job by its tag."""

import os
from datetime import timedelta

import dagster as dg

from learning_pipeline.defs.partitions import GRAIN_TAG

daily_job = dg.define_asset_job(
    "daily_job",
    selection=dg.AssetSelection.tag(GRAIN_TAG, "day"),
    description="One UTC day: validate landed events, then every daily-partitioned asset built from them.",
)
learning_job = dg.define_asset_job(
    "learning_job",
    selection=dg.AssetSelection.tag(GRAIN_TAG, "all_days"),
    description="Everything learned from all days: stats, posteriors, recommendations, routing, configs.",
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


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        jobs=[daily_job, learning_job], schedules=[daily_job_schedule], sensors=[automation_sensor]
    )
