"""Continuous learning, the learning-cycle schedules, the after-cycle trigger and ERROR alerts."""

import json
import os
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb

from learning_pipeline.defs.autonomy.assets import autonomy_job
from learning_pipeline.defs.autonomy.resources import AutonomyResource
from learning_pipeline.defs.resources import LakeResource
from learning_pipeline.lib.autonomy import continuous as loop
from learning_pipeline.lib.autonomy.alerts import (
    Alert,
    raise_and_notify,
    root_cause_line,
    run_failure_message,
)
from learning_pipeline.lib.events.staging import read_log
from learning_pipeline.lib.storage.warehouse import lake_connection

LEARNING_CYCLE_JOB = "learning_cycle_job"
LEARNING_JOB = "learning_job"
CRON_ENV = "LEARNING_CYCLE_CRON"
DEFAULT_CRON = "0 */6 * * *"
SENSOR_SECONDS_ENV = "LEARNING_PIPELINE_CONTINUOUS_SENSOR_SECONDS"
TRIGGER_TAG = "learning_pipeline/trigger"


def _learning_events(paths):
    with lake_connection(paths) as con:
        try:
            return con.execute("SELECT event_type, improvement, created_at FROM learning_events").df()
        except duckdb.CatalogException:  # no learning_events table yet
            import pandas as pd

            return pd.DataFrame(columns=["event_type", "improvement", "created_at"])


def evaluate_loop(paths, settings: loop.LoopSettings, now: datetime):
    """State, new events and the decision for one tick (shared by the sensor and `learning-pipeline` status)."""
    state = loop.loop_state(loop.read_learning_cycles(paths), now)
    entries = read_log(paths, after_seq=state.last_cycle_seq)
    new_events = int(sum(entry.records for entry in entries))
    last_seq = max([entry.seq for entry in entries], default=state.last_cycle_seq)
    improvements, evaluations = loop.recent_improvements(
        _learning_events(paths), state.evaluations_at_wake, settings.convergence_cycles
    )
    shift = None
    if state.converged_at is not None:
        with lake_connection(paths) as con:
            shift = loop.detect_shift(con, state.converged_at, now, settings)
    decision = loop.decide(now, state, new_events, improvements, settings, shift)
    decision.details["evaluations"] = evaluations
    return state, decision, last_seq


@dg.sensor(
    job_name=LEARNING_CYCLE_JOB,
    minimum_interval_seconds=int(os.environ.get(SENSOR_SECONDS_ENV, "60")),
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Requests a learning cycle when min_new_events landed since the last one, the cooldown has passed "
    "and the day's cap is not reached; pauses when converged until a data shift wakes it. Every tick says why.",
)
def continuous_learning_sensor(
    context: dg.SensorEvaluationContext, lake: LakeResource, autonomy: AutonomyResource
):
    paths = lake.paths
    autonomy = autonomy.effective(paths)  # the operator's settings (API / CLI) over the resource's defaults
    if not autonomy.continuous_learning:
        return dg.SensorResult(
            skip_reason=dg.SkipReason("continuous learning is switched off (learning-pipeline settings)")
        )
    now = autonomy.clock()
    settings = autonomy.loop_settings()
    state, decision, last_seq = evaluate_loop(paths, settings, now)
    # The cursor shows the loop's state in the UI; decisions are rebuilt from the learning_cycles table, so a
    # reset cursor or a restarted daemon decides the same way.
    cursor = json.dumps(
        {
            "staging_seq": last_seq,
            "evaluated_at": now.isoformat(),
            "cycles_today": state.cycles_today,
            "converged": state.converged_at is not None and not decision.wake,
        }
    )
    if decision.converge:
        loop.record_cycle_event(
            paths,
            loop.CONVERGED,
            now,
            context.sensor_name,
            staging_seq=last_seq,
            mean_improvement=decision.mean_improvement,
            reason=decision.reason,
        )
        raise_and_notify(
            autonomy.alert_store(paths),
            Alert(
                "CONVERGENCE",
                "INFO",
                "learning loop converged",
                decision.reason + "; paused until a data shift",
                dedup_key=f"CONVERGENCE:{now:%Y-%m-%dT%H:%M}",
                metric="mean_improvement",
                value=decision.mean_improvement,
                threshold=settings.convergence_threshold,
                source=context.sensor_name,
            ),
            autonomy.webhook_url or None,
            now=now,
        )
    if decision.wake:
        loop.record_cycle_event(
            paths,
            loop.WOKEN,
            now,
            context.sensor_name,
            staging_seq=last_seq,
            reason=decision.reason,
            details={"evaluations": decision.details["evaluations"]},
        )
    if not decision.run:
        return dg.SensorResult(skip_reason=dg.SkipReason(decision.reason), cursor=cursor)
    partition = (now - timedelta(hours=1)).date().isoformat()  # just after midnight: the day that ended
    run_key = f"continuous-{now:%Y%m%dT%H%M%S}-seq{last_seq}"
    loop.record_cycle_event(
        paths,
        loop.CYCLE_REQUESTED,
        now,
        context.sensor_name,
        partition_key=partition,
        run_key=run_key,
        staging_seq=last_seq,
        new_events=decision.new_events,
        reason=decision.reason,
    )
    context.log.info(decision.reason)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=run_key,
                partition_key=partition,
                tags={TRIGGER_TAG: context.sensor_name, "learning_pipeline/reason": decision.reason[:200]},
            )
        ],
        cursor=cursor,
    )


def _cron() -> str:
    return os.environ.get(CRON_ENV, DEFAULT_CRON)


@dg.schedule(
    job_name=LEARNING_CYCLE_JOB,
    cron_schedule=_cron(),
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description=f"A learning cycle on a fixed cron (${CRON_ENV}, default '{DEFAULT_CRON}') for the UTC day of "
    "the hour before the tick (a midnight tick evaluates the day that just ended, not an empty one).",
)
def learning_cycle_schedule(context: dg.ScheduleEvaluationContext, lake: LakeResource):
    tick = context.scheduled_execution_time.astimezone(UTC)
    partition = (tick - timedelta(hours=1)).date().isoformat()
    run_key = f"schedule-{tick:%Y%m%dT%H%M}"
    loop.record_cycle_event(
        lake.paths,
        loop.CYCLE_REQUESTED,
        tick,
        "learning_cycle_schedule",
        partition_key=partition,
        run_key=run_key,
        reason="scheduled",
    )
    return dg.RunRequest(
        run_key=run_key, partition_key=partition, tags={TRIGGER_TAG: "learning_cycle_schedule"}
    )


learning_schedule = dg.ScheduleDefinition(
    name="learning_schedule",
    job_name=LEARNING_JOB,
    cron_schedule=_cron(),
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description=f"learning_job (stats, posteriors, recommendations) on the learning-cycle cron (${CRON_ENV}).",
)

graduation_schedule = dg.ScheduleDefinition(
    name="graduation_schedule",
    job=autonomy_job,
    cron_schedule="30 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Hourly approvals, graduation check and alerts, also when no learning cycle ran.",
)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    request_job=autonomy_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After every successful learning cycle: approvals, graduation check, alerts.",
)
def after_learning_cycle_sensor(context: dg.RunStatusSensorContext):
    if context.dagster_run.job_name != LEARNING_CYCLE_JOB:
        return dg.SkipReason(f"{context.dagster_run.job_name} is not {LEARNING_CYCLE_JOB}")
    return dg.RunRequest(run_key=f"after-{context.dagster_run.run_id}")


@dg.run_failure_sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Raises an ERROR alert (CRITICAL for learning cycles) for every failed run.",
)
def run_failure_alert_sensor(
    context: dg.RunFailureSensorContext, lake: LakeResource, autonomy: AutonomyResource
):
    run = context.dagster_run
    causes = [
        (event.step_key, root_cause_line(event.step_failure_data.error))
        for event in context.get_step_failure_events()
    ]
    if not causes:  # the run failed outside its steps (its code did not load, its worker died)
        error = getattr(context.failure_event.event_specific_data, "error", None)
        causes = [("run", root_cause_line(error) if error else context.failure_event.message or "failed")]
    message = run_failure_message(run.run_id, causes)
    row, detail = raise_and_notify(
        autonomy.alert_store(lake.paths),
        Alert(
            "ERROR",
            "CRITICAL" if run.job_name in (LEARNING_CYCLE_JOB, LEARNING_JOB) else "WARNING",
            f"run of {run.job_name} failed",
            message[:2000],
            dedup_key=f"ERROR:{run.run_id}",
            details={"run_id": run.run_id, "job_name": run.job_name, "tags": dict(run.tags)},
            source="run_failure_alert_sensor",
        ),
        autonomy.webhook_url or None,
        now=autonomy.clock(),
    )
    if row is not None:
        context.log.info(f"ERROR alert {row['id']} for run {run.run_id} (webhook: {detail})")
