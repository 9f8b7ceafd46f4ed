"""decision_log_sensor: a run of decisions_job for every day whose decision log received new files."""

import json
import os

import dagster as dg

from learning_pipeline.defs.decisions.assets import decisions_job
from learning_pipeline.defs.resources import LakeResource
from learning_pipeline.lib.events.decisions import days_with_decisions, decision_log_dir


@dg.sensor(
    job=decisions_job,
    minimum_interval_seconds=int(os.environ.get("LEARNING_PIPELINE_LANDING_SENSOR_SECONDS", "5")),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests agent_decisions for each day whose decision log has files newer than the last run.",
)
def decision_log_sensor(context: dg.SensorEvaluationContext, lake: LakeResource):
    seen: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    paths = lake.paths
    requests = []
    for day in days_with_decisions(paths):
        files = list((decision_log_dir(paths) / f"event_date={day}").glob("*.parquet"))
        newest = max((f.stat().st_mtime_ns for f in files), default=0)
        if newest > seen.get(day, 0):
            requests.append(dg.RunRequest(run_key=f"decisions-{day}-{newest}", partition_key=day))
            seen[day] = newest
    if not requests:
        return dg.SkipReason("no new decision log files")
    context.update_cursor(json.dumps(seen))
    return requests
