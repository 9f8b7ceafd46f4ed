"""`learning-pipeline demo`: simulate events, run the daily and learning jobs on a local instance, summarize."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from learning_pipeline.cli.code_location_runs import CodeLocationRuns
from learning_pipeline.lib.events.staging import current_entries, list_landing_files
from learning_pipeline.lib.simulation.simulate import SimulationConfig, load_truth, write_simulation
from learning_pipeline.lib.storage.lake import DATA_DIR_ENV, LakePaths
from learning_pipeline.lib.storage.warehouse import lake_connection, refresh_warehouse_views


@dataclass(frozen=True)
class DemoSettings:
    data_dir: str
    dagster_home: str
    days: int = 7
    events_per_day: int = 5000
    seed: int = 7


def _true_best_agents(data_dir: Path) -> dict[str, str]:
    """The simulator's true best agent per task type on its last day, when the events were simulated."""
    try:
        truth = load_truth(data_dir)
    except FileNotFoundError:
        return {}
    last_day = truth["end_date"]
    return {
        row["task_type"]: row["best_agent"]
        for row in truth["best_agents_by_day"]
        if row["event_date"] == last_day
    }


def use_local_instance(data_dir: str, dagster_home: str) -> tuple[Path, Path, LakePaths]:
    """Point this process at a data directory and a local Dagster instance (read when definitions load)."""
    data = Path(data_dir).resolve()
    home = Path(dagster_home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ[DATA_DIR_ENV] = str(data)
    os.environ["DAGSTER_HOME"] = str(home)
    return data, home, LakePaths.at(data).ensure()


def start_partitions_at(data_dir: Path, first_day: str) -> None:
    """The first partition is the data's first day (kept if an earlier day is already recorded), unless
    $LEARNING_PIPELINE_START_DATE sets it. Definitions loaded afterwards read it."""
    from learning_pipeline.defs.partitions import (
        START_DATE_ENV,
        read_start_date,
        start_date_file,
        write_start_date,
    )

    if os.environ.get(START_DATE_ENV):
        return
    if start_date_file(data_dir).is_file() and read_start_date(data_dir) <= first_day:
        return
    write_start_date(data_dir, first_day)


def run_demo(settings: DemoSettings, echo=print) -> dict:
    """Land simulated events (unless the landing zone already has some) and materialize every asset."""
    data_dir, home, paths = use_local_instance(settings.data_dir, settings.dagster_home)

    if list_landing_files(paths):
        echo(f"reusing the {len(list_landing_files(paths))} files already in {paths.landing}")
    else:
        config = SimulationConfig(
            days=settings.days,
            events_per_day=settings.events_per_day,
            seed=settings.seed,
            propensities=True,
            malformed_share=0.002,
            duplicate_share=0.01,
        )
        summary = write_simulation(config, data_dir).summary()
        echo(f"simulated {summary['events']} events over {settings.days} days into {paths.landing}")

    # Imported here: the definitions read the data directory (and the first partition) when loaded.
    from learning_pipeline.defs.resources import default_lake_resource
    from learning_pipeline.lib.events.staging import stage_pending

    stage_pending(paths, default_lake_resource().staging_rules())
    days = sorted({day for entry in current_entries(paths).values() for day in entry.dates})
    if not days:
        raise RuntimeError(f"no events to ingest in {paths.landing}")
    start_partitions_at(data_dir, days[0])  # the code server loaded below reads it
    quiet = {
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
        "execution": {"config": {"in_process": {}}},
    }
    with dg.DagsterInstance.get() as instance, CodeLocationRuns(instance) as runs:
        for day in days:
            runs.execute("daily_job", run_config=quiet, partition_key=day)
        echo(f"ingested {len(days)} day(s): {days[0]} .. {days[-1]}")
        runs.execute("learning_job", run_config=quiet)
        runs.execute("learning_cycle_job", run_config=quiet, partition_key=days[-1])
        _sensors_start_after_demo(runs, paths)
        _operator_makes_live(paths, echo)
        runs.execute("summary_job", run_config=quiet)  # learning_summary: the asset to open first

    refresh_warehouse_views(paths)  # what warehouse_views_sensor does after each run under the daemon
    con = lake_connection(paths)
    counts = con.execute(
        "SELECT (SELECT count(*) FROM outcome_events), (SELECT count(*) FROM quarantined_events)"
    ).fetchone()
    top = con.execute(
        "SELECT task_type, agent_name, round(score, 3) FROM agent_recommendations "
        "WHERE rank = 1 AND context_key = '*' AND task_type <> '*' ORDER BY task_type"
    ).fetchall()
    versions = con.execute(
        "SELECT version_number, gate, gate_reason, aliases FROM model_versions ORDER BY version_number"
    ).fetchall()
    summary = {"days": len(days), "accepted": counts[0], "quarantined": counts[1], "top_agents": top}
    echo("")
    echo(f"accepted events: {counts[0]}   quarantined: {counts[1]}   lake: {paths.lake}")
    truth = _true_best_agents(data_dir)
    matches = sum(truth.get(task_type) == agent for task_type, agent, _ in top)
    header = "recommended agent per task type (posterior mean)"
    echo(header + (f"; the simulator's true best: {matches} of {len(top)}" if truth else ""))
    for task_type, agent, score in top:
        mark = ""
        if truth:
            mark = (
                "  = true best" if truth.get(task_type) == agent else f"  (true best: {truth.get(task_type)})"
            )
        echo(f"  {task_type:<24} {agent:<20} {score}{mark}")
    for number, gate, reason, aliases in versions:
        echo(f"model agent-router v{number}: {gate} ({reason}) aliases: {aliases or '-'}")
    echo("")
    echo(
        f"query it:      duckdb {paths.warehouse}  (views: outcome_events, agent_stats, agent_posteriors, ...)"
    )
    echo(f"MLflow:        mlflow ui --backend-store-uri sqlite:///{data_dir / 'mlflow.db'}")
    echo(f"open the UI:   DAGSTER_HOME={home} {DATA_DIR_ENV}={data_dir} dagster dev   (or: make ui)")
    echo("               then http://127.0.0.1:3000 shows the asset graph and these materializations")
    return summary


def _sensors_start_after_demo(runs: CodeLocationRuns, paths: LakePaths) -> None:
    """The demo ran the days it staged itself: the sensors start after them, so `make ui` starts quiet."""
    from learning_pipeline.defs.decisions.sensors import decision_cursor_through_now
    from learning_pipeline.defs.events.sensors import landing_cursor_through_staged

    runs.set_sensor_cursor("landing_zone_sensor", landing_cursor_through_staged(paths))
    runs.set_sensor_cursor("decision_log_sensor", decision_cursor_through_now(paths))


def _operator_makes_live(paths: LakePaths, echo) -> None:
    """What a person does in production: approve the accepted version and make it live (@champion)."""
    from learning_pipeline.lib.autonomy import graduation, operations
    from learning_pipeline.lib.learning.registry import default_tracking_uri

    uri = os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(paths.root)
    operations.decide_approvals(paths, uri, graduation.ApprovalThresholds())
    pending = [v for v, status in graduation.approval_status(paths).items() if status == graduation.PENDING]
    if not pending:
        return
    version, by = max(pending), "demo operator"
    operations.approve_and_go_live(
        paths, uri, version, by, "the demo approves its accepted version and makes it live"
    )
    echo(f"agent-router v{version}: approved and made live by the {by} (a person's decision in production)")
