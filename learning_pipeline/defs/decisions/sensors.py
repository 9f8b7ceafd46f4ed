"""decision_log_sensor: a run of decisions_job for every day whose decision log received new files."""

import json
import os

import dagster as dg

from learning_pipeline.defs.decisions.assets import decisions_job
from learning_pipeline.defs.resources import LakeResource
from learning_pipeline.lib.events.decisions import days_with_decisions, decision_log_dir
from learning_pipeline.lib.storage.lake import LakePaths


def newest_decision_files(paths: LakePaths) -> dict[str, int]:
    """Per day of the decision log, the newest file's modification time (ns): the sensor's cursor format."""
    newest = {}
    for day in days_with_decisions(paths):
        files = (decision_log_dir(paths) / f"event_date={day}").glob("*.parquet")
        newest[day] = max((f.stat().st_mtime_ns for f in files), default=0)
    return newest


def decision_cursor_through_now(paths: LakePaths) -> str:
    """The decision_log_sensor cursor saying every decision-log file present now has had its run."""
    return json.dumps(newest_decision_files(paths))


@dg.sensor(
    job=decisions_job,
    minimum_interval_seconds=int(os.environ.get("LEARNING_PIPELINE_LANDING_SENSOR_SECONDS", "5")),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests agent_decisions for each day whose decision log has files newer than the last run.",
)
def decision_log_sensor(context: dg.SensorEvaluationContext, lake: LakeResource):
    seen: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    requests = []
    for day, newest in newest_decision_files(lake.paths).items():
        if newest > seen.get(day, 0):
            requests.append(dg.RunRequest(run_key=f"decisions-{day}-{newest}", partition_key=day))
            seen[day] = newest
    if not requests:
        return dg.SkipReason("no new decision log files")
    context.update_cursor(json.dumps(seen))
    return requests
