"""`learning-pipeline demo`: simulate events, run the daily and learning jobs on a local instance, summarize."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

import dagster as dg

from learning_pipeline.cli.code_location_runs import CodeLocationRuns
from learning_pipeline.lib.events.staging import current_entries, list_landing_files
from learning_pipeline.lib.simulation.simulate import SimulationConfig, load_truth, write_simulation
from learning_pipeline.lib.storage.lake import DATA_DIR_ENV, LakePaths
from learning_pipeline.lib.storage.warehouse import lake_connection, refresh_warehouse_views

# The demos' runs: warnings only on the console, every step in the run worker's process.
QUIET_RUN = {
    "loggers": {"console": {"config": {"log_level": "WARNING"}}},
    "execution": {"config": {"in_process": {}}},
}


@dataclass(frozen=True)
class DemoSettings:
    data_dir: str
    dagster_home: str
    days: int = 7
    events_per_day: int = 5000
    seed: int = 7

    def simulation(self, **options) -> SimulationConfig:
        """The simulated event stream (with propensities) of these settings."""
        return SimulationConfig(
            days=self.days, events_per_day=self.events_per_day, seed=self.seed, propensities=True, **options
        )

    @classmethod
    def from_args(cls, args) -> DemoSettings:
        """The settings from parsed command-line options of the same names."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})


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
        config = settings.simulation(malformed_share=0.002, duplicate_share=0.01)
        summary = write_simulation(config, data_dir).summary()
        echo(f"simulated {summary['events']} events over {settings.days} days into {paths.landing}")

    # Imported here: the definitions read the data directory (and the first partition) when loaded.
    from learning_pipeline.defs.resources import default_lake_resource
    from learning_pipeline.lib.events.staging import stage_pending

    stage_pending(paths, default_lake_resource().staging_rules())
    days = sorted({day for entry in current_entries(paths).values() for day in entry.dates})
    if not days:
        raise ValueError(f"no events to ingest in {paths.landing}: empty it to let the demo simulate some")
    start_partitions_at(data_dir, days[0])  # the code server loaded below reads it
    log = home / "demo_runs.log"
    echo(
        f"running the pipeline's jobs through the code location (runs listed in the UI; their output: {log}):"
    )
    with code_location_runs(log) as runs:

        def run(label: str, job: str, partition_key: str | None = None) -> None:
            started = time.monotonic()
            runs.execute(job, run_config=QUIET_RUN, partition_key=partition_key)
            echo(f"  {label:<52} {time.monotonic() - started:5.0f} s")

        for number, day in enumerate(days, start=1):
            run(f"daily_job {day} (day {number} of {len(days)})", "daily_job", day)
        echo(f"  ingested {len(days)} day(s): {days[0]} .. {days[-1]}")
        run("learning_job (stats, posteriors, training data)", "learning_job")
        run(f"learning_cycle_job {days[-1]} (train, evaluate, gate)", "learning_cycle_job", days[-1])
        sensors_start_after_demo(runs, paths)
        _operator_makes_live(paths, echo)
        run("summary_job (learning_summary)", "summary_job")  # the asset to open first

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
    _next_steps(data_dir, home, echo)
    return summary


@contextmanager
def code_location_runs(log: Path) -> Iterator[CodeLocationRuns]:
    """Runs through the workspace's code location on this process's instance, their output going to `log`."""
    with _children_stderr_to(log), dg.DagsterInstance.get() as instance, CodeLocationRuns(instance) as runs:
        yield runs


@contextmanager
def _children_stderr_to(log: Path) -> Iterator[None]:
    """The code server and run workers started in the block write their stderr (library notices, warnings,
    Dagster's console log) to `log`, not the terminal: the demo prints its progress and summary, and a
    failed run is reported from its event log."""
    sys.stderr.flush()
    saved = os.dup(2)
    with log.open("ab") as out:
        os.dup2(out.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _next_steps(data_dir: Path, home: Path, echo) -> None:
    """Commands that work as printed: the environment's bin directory first when it is not on PATH."""
    bin_dir = Path(sys.executable).parent
    on_path = str(bin_dir) in os.environ.get("PATH", "").split(os.pathsep)
    echo(
        "next" + ("" if on_path else f" (first put the environment on PATH: source {bin_dir}/activate)") + ":"
    )
    query = "SELECT agent_name, count(*) FROM outcome_events GROUP BY 1"
    echo(f'  learning-pipeline sql "{query}" --data-dir {data_dir}')
    echo("  make ui         Dagster UI at http://127.0.0.1:3000; open learning_summary (group summary) first")
    echo(
        f"                  (or: DAGSTER_HOME={home} {DATA_DIR_ENV}={data_dir} dagster dev -w workspace.yaml)"
    )
    echo("  make mlflow-ui  MLflow UI at http://127.0.0.1:5000")
    echo(f"                  (or: mlflow ui --backend-store-uri sqlite:///{data_dir / 'mlflow.db'})")
    echo(f"  learning-pipeline serve --data-dir {data_dir}   the Learning API at http://127.0.0.1:8000")


def sensors_start_after_demo(runs: CodeLocationRuns, paths: LakePaths) -> None:
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
