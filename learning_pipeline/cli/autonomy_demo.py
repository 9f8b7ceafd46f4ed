"""`learning-pipeline autonomy-demo`: the autonomous loop over a simulated timeline on a local instance.

Day by day (the clock is the simulated day's evening): the day's events land, are ingested, the
continuous-learning sensor decides (its reason is printed), a requested cycle trains/evaluates/registers a
version, then approvals, graduation and alerts run. Every job runs through the workspace's code location, as
in `demo`: the runs are listed and re-executable in the UI, and the simulated clock reaches them as run config
of the `autonomy` resource. From `switch_day` on the best agent of every task type
changes: success rates drop, alerts fire, the loop wakes up if it had converged. A version that graduates to
shadow waits for a person: `learning-pipeline graduation approve VERSION --by NAME --reason TEXT`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, time

import dagster as dg
import pyarrow.compute as pc

from learning_pipeline.cli.code_location_runs import CodeLocationRuns, RunFailedError
from learning_pipeline.cli.demo import (
    QUIET_RUN,
    DemoSettings,
    code_location_runs,
    sensors_start_after_demo,
    start_partitions_at,
    use_local_instance,
)
from learning_pipeline.lib.simulation.simulate import DEFAULT_TASK_TYPES, generate_table
from learning_pipeline.lib.storage.lake import DATA_DIR_ENV, land_records


@dataclass(frozen=True)
class AutonomyDemoSettings(DemoSettings):
    days: int = 10
    events_per_day: int = 1500
    seed: int = 11
    switch_day: int = 7
    auto_approve: bool = True


def _outcome(runs: CodeLocationRuns, job_name: str, **options) -> str:
    """'ok', or 'FAILED (why)': the demo goes on to the next day as the loop would."""
    try:
        runs.execute(job_name, **options)
    except RunFailedError as error:
        return f"FAILED ({error})"
    return "ok"


def _records(table) -> list[dict]:
    """Event rows as an agent would send them (JSON-valued fields as JSON, timestamps as ISO text)."""
    from learning_pipeline.lib.events.schema import EVENT_FIELDS

    json_fields = {f.name for f in EVENT_FIELDS if f.kind in ("json", "object")}
    rows = table.to_pylist()
    for row in rows:
        for key, value in row.items():
            if isinstance(value, datetime):
                row[key] = value.isoformat()
            elif key in json_fields and isinstance(value, str):
                row[key] = json.loads(value)
    return rows


def autonomy_config(settings: AutonomyDemoSettings, now: datetime) -> dict:
    """The `autonomy` resource's config on a simulated day: its clock (`now`) and the demo's small thresholds.
    Runs get it as run config, so a re-execution from the UI decides at the same simulated time."""
    return {
        "now": now.isoformat(),
        "min_new_events": 500,
        "min_iteration_gap_minutes": 60,
        "auto_approve": settings.auto_approve,
        "approve_min_samples": 200,
        "graduation_min_cycles": 2,
        "graduation_min_samples": 200,
        "graduation_min_success_rate": 0.6,
        "graduation_consistency_window": 2,
    }


def run_autonomy_demo(settings: AutonomyDemoSettings, echo=print) -> dict:
    data_dir, home, paths = use_local_instance(settings.data_dir, settings.dagster_home)
    cfg = settings.simulation(switch_day=settings.switch_day, switch_task_types=DEFAULT_TASK_TYPES)
    start_partitions_at(data_dir, cfg.day_date(0).isoformat())  # before the code location is loaded

    from learning_pipeline.defs.autonomy.resources import AutonomyResource
    from learning_pipeline.defs.autonomy.sensors import continuous_learning_sensor
    from learning_pipeline.defs.models.resources import MlflowResource
    from learning_pipeline.defs.resources import LakeResource
    from learning_pipeline.lib.autonomy import operations as autonomy_ops
    from learning_pipeline.lib.autonomy.alerts import AlertStore
    from learning_pipeline.lib.events.staging import stage_pending

    table = generate_table(cfg)
    day_of = pc.strftime(table.column("timestamp"), "%Y-%m-%d")
    lake, mlflow = LakeResource(data_dir=str(data_dir)), MlflowResource(data_dir=str(data_dir))
    cycle_config = {
        **QUIET_RUN,
        "ops": {
            "candidate_policy": {"config": {"window_days": 3, "contextual_model": False}},
            "policy_evaluation": {"config": {"n_bootstrap": 200}},
        },
    }
    timeline = []
    log = home / "autonomy_demo_runs.log"
    echo(f"running the jobs through the code location (runs listed in the UI; their output: {log}):")
    with code_location_runs(log) as runs:
        for index in range(settings.days):
            day = cfg.day_date(index)
            autonomy = autonomy_config(settings, datetime.combine(day, time(23, 0), tzinfo=UTC))
            land_records(
                paths.landing, _records(table.filter(pc.equal(day_of, day.isoformat()))), prefix=f"day{index}"
            )
            stage_pending(paths, lake.staging_rules())
            runs.execute("daily_job", run_config=QUIET_RUN, partition_key=day.isoformat())
            line = {"day": day.isoformat(), "switched": index >= settings.switch_day}
            if index < 3:  # a cycle needs a training window before its held-out day
                line["decision"] = "collecting a training window (the sensor starts on day 4)"
            else:  # one tick of the sensor at the simulated time; the run it requests goes to the code location
                tick = continuous_learning_sensor(
                    dg.build_sensor_context(
                        instance=runs.instance,
                        sensor_name="continuous_learning_sensor",
                        resources={"lake": lake, "autonomy": AutonomyResource(**autonomy)},
                    )
                )
                if tick.run_requests:
                    request = tick.run_requests[0]
                    outcome = _outcome(
                        runs,
                        "learning_cycle_job",
                        run_config=cycle_config,
                        partition_key=request.partition_key,
                        tags=request.tags,
                    )
                    line["decision"] = f"cycle {outcome}: " + request.tags.get("learning_pipeline/reason", "")
                else:
                    line["decision"] = tick.skip_reason.skip_message
            approvals = _outcome(
                runs,
                "autonomy_job",
                run_config={**QUIET_RUN, "resources": {"autonomy": {"config": autonomy}}},
            )
            if approvals != "ok":
                line["decision"] += f"; approvals, graduation and alerts {approvals}"
            status = autonomy_ops.status_frame(paths, mlflow.uri)
            line["stages"] = {
                int(r.version_number): r.stage or r.approval or r.status for r in status.itertuples()
            }
            timeline.append(line)
            echo(f"{line['day']}{' (after the switch)' if line['switched'] else ''}: {line['decision']}")
            echo(f"    versions: {json.dumps(line['stages'])}")
        sensors_start_after_demo(runs, paths)
    alerts = AlertStore(paths).list()
    echo("")
    echo("alerts:")
    for row in alerts.itertuples():
        echo(f"  {row.id}  {row.severity:<8} {row.alert_type:<24} {row.title}")
    shadow = [v for line in timeline[-1:] for v, s in line["stages"].items() if s == "shadow"]
    echo("")
    echo("list alerts:    learning-pipeline alerts --data-dir " + str(data_dir))
    echo("versions:       learning-pipeline graduation status --data-dir " + str(data_dir))
    if shadow:
        echo(
            f"go live:        learning-pipeline graduation approve {shadow[-1]} --by NAME --reason TEXT "
            f"--data-dir {data_dir}"
        )
    echo(f"open the UI:    DAGSTER_HOME={home} {DATA_DIR_ENV}={data_dir} dagster dev -w workspace.yaml")
    return {"timeline": timeline, "alerts": len(alerts)}
