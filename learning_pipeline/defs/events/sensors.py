"""The landing-zone sensor: new landing files request runs for exactly the days they hold."""

import os

import dagster as dg

from learning_pipeline.defs.partitions import daily_partitions
from learning_pipeline.defs.resources import LakeResource
from learning_pipeline.lib.events.staging import read_log, stage_pending
from learning_pipeline.lib.storage.lake import LakePaths
from learning_pipeline.lib.storage.warehouse import refresh_warehouse_views

SENSOR_INTERVAL_ENV = "LEARNING_PIPELINE_LANDING_SENSOR_SECONDS"

# What a day with new landing files needs for fresh recommendations, in one run and one process: no wait for
# a second run to be queued, launched and loaded before the posteriors follow the new events. The rest
# (window stats, training data) follows through automation conditions.
landing_job = dg.define_asset_job(
    "landing_job",
    selection=dg.AssetSelection.assets(
        "outcome_events",
        "quarantined_events",
        "agent_daily_stats",
        "agent_posteriors",
        "agent_recommendations",
    ),
    executor_def=dg.in_process_executor,
    description="Run by the landing-zone sensor: ingest a day, update its daily stats, then the posteriors and "
    "recommendations.",
)


def landing_cursor_through_staged(paths: LakePaths) -> str | None:
    """The landing_zone_sensor cursor saying every file in the staging log has had its runs (None: empty log).

    For a process that ingested the staged days itself (the demo): with this cursor the sensor starts quiet.
    """
    entries = read_log(paths, after_seq=0)
    return str(entries[-1].seq) if entries else None


# Landing files staged per tick; more wait for the next tick, so a bulk drop never times out a tick.
MAX_FILES_PER_TICK = 200


@dg.sensor(
    job=landing_job,
    minimum_interval_seconds=int(os.environ.get(SENSOR_INTERVAL_ENV, "5")),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Stages new landing files and requests an ingest run for every day they touch.",
)
def landing_zone_sensor(context: dg.SensorEvaluationContext, lake: LakeResource):
    """The cursor is the last staging-log sequence number turned into run requests.

    Staging writes the log before this sensor reads it, so a crash between the two only delays the
    request to the next tick; a restarted sensor resumes from its cursor and never re-requests old files.
    """
    paths = lake.paths
    staged_now = stage_pending(paths, lake.staging_rules(), max_files=MAX_FILES_PER_TICK)
    for entry in staged_now:
        if entry.error:  # quarantined on its arrival day, set aside and alerted by staging
            context.log.warning(f"unreadable landing file {entry.landing_file}: {entry.error}")
    after = int(context.cursor or 0)
    entries = read_log(paths, after_seq=after)
    if not entries:
        return dg.SkipReason("no new landing files")

    existing = set(daily_partitions.get_partition_keys())
    ready = []
    for entry in entries:
        if not set(entry.dates) <= existing:
            # A record dated tomorrow (within the allowed clock skew): wait until its day's partition exists.
            break
        ready.append(entry)
    if not ready:
        return dg.SkipReason(f"waiting for the partition of {sorted(entries[0].dates)[-1]} to exist")

    last_seq = ready[-1].seq
    days = sorted({day for entry in ready for day in entry.dates})
    # A day whose run is still queued needs no second run: it reads every file staged before it starts.
    waiting = _days_with_a_queued_run(context) & set(days)
    context.log.info(
        f"staged {len(staged_now)} new file(s); {len(ready)} file(s) since seq {after} touch {len(days)} day(s)"
        + (f"; {len(waiting)} already queued" if waiting else "")
    )
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(partition_key=day, run_key=f"landing-{day}-through-{last_seq}")
            for day in days
            if day not in waiting
        ],
        cursor=str(last_seq),
    )


def _days_with_a_queued_run(context: dg.SensorEvaluationContext) -> set[str]:
    try:
        instance = context.instance
    except dg.DagsterInvariantViolationError:  # evaluated without an instance (direct calls in tests)
        return set()
    runs = instance.get_runs(
        filters=dg.RunsFilter(job_name=landing_job.name, statuses=[dg.DagsterRunStatus.QUEUED]), limit=1000
    )
    return {run.tags["dagster/partition"] for run in runs if "dagster/partition" in run.tags}


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitor_all_code_locations=False,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After every successful run, refreshes the DuckDB warehouse views so new lake tables show up.",
)
def warehouse_views_sensor(context: dg.RunStatusSensorContext, lake: LakeResource):
    tables = refresh_warehouse_views(lake.paths)
    context.log.info(f"warehouse views: {', '.join(tables)}")
