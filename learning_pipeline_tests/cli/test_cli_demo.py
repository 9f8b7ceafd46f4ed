"""`learning-pipeline demo`, the README's first command, run as a user runs it (small volume), then looked at
through the GraphQL API the Dagster UI uses, on the code location the UI loads (workspace.yaml)."""

import os
import subprocess
import sys

import dagster as dg
import duckdb
import pytest

from learning_pipeline.lib.events.staging import read_log
from learning_pipeline.lib.storage.lake import DATA_DIR_ENV, LakePaths
from learning_pipeline_tests._servers import demo_command
from learning_pipeline_tests.cli._dagster_ui import (
    LOCATION,
    REPOSITORY,
    graphql,
    reexecute,
    run_demo,
    ui_context,
)

DAYS = 3


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    data_dir, home = root / "data", root / "dagster_home"
    return data_dir, home, run_demo(demo_command(data_dir, home, days=DAYS, seed=3))


@pytest.fixture(scope="module")
def ui(demo):
    """What `make ui` serves after the demo: the workspace's code location over the demo's instance."""
    with ui_context(*demo[:2]) as ui:
        yield ui


def test_demo_runs_every_job_and_reports(demo):
    data_dir, home, out = demo
    assert f"ingested {DAYS} day(s)" in out.stdout
    assert "model agent-router v1: accepted" in out.stdout
    assert "dagster dev" in out.stdout
    assert "code server" not in out.stdout  # the code server's own log stays out of the summary

    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM outcome_events").fetchone()[0] == 4500
        assert con.execute("SELECT count(DISTINCT task_type) FROM agent_recommendations").fetchone()[0] > 1
    # The runs are in the local instance the UI reads.
    assert (home / "history" / "runs.db").exists() or any(home.rglob("runs.db"))


RUNS_OF_JOB = """
query RunsOfJob($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId status jobName repositoryOrigin { repositoryLocationName repositoryName } } }
  }
}
"""


def test_demo_runs_belong_to_the_code_location_the_ui_loads(demo, ui):
    instance, context = ui
    runs = instance.get_runs()
    jobs = sorted(r.job_name for r in runs if r.parent_run_id is None)
    assert jobs == ["daily_job"] * DAYS + ["learning_cycle_job", "learning_job", "summary_job"]
    for run in runs:
        if run.parent_run_id is not None:  # a re-execution made by another test
            continue
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.remote_job_origin is not None and run.job_code_origin is not None
        assert run.remote_job_origin.location_name == LOCATION

    # The job page lists a job's runs of this repository (it said "No runs found" for in-process runs).
    repository_tag = {"key": ".dagster/repository", "value": f"{REPOSITORY}@{LOCATION}"}
    for job in ("daily_job", "learning_job", "learning_cycle_job"):
        data = graphql(context, RUNS_OF_JOB, {"filter": {"pipelineName": job, "tags": [repository_tag]}})
        results = data["runsOrError"]["results"]
        assert results, f"no runs of {job} on its job page"
        assert {r["repositoryOrigin"]["repositoryLocationName"] for r in results} == {LOCATION}


def test_a_demo_run_can_be_re_executed_from_the_ui(demo, ui):
    instance, context = ui
    [parent] = instance.get_runs(
        dg.RunsFilter(job_name="daily_job", tags={"dagster/partition": _days(demo)[0]})
    )
    run = reexecute(instance, context, parent.run_id)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["dagster/partition"] == parent.tags["dagster/partition"]


SENSOR = """
query Sensor($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status typeSpecificData { ... on SensorData { lastCursor } } } }
  }
}
"""
DRY_RUN = """
mutation DryRun($selector: SensorSelector!, $cursor: String) {
  sensorDryRun(selectorData: $selector, cursor: $cursor) {
    __typename
    ... on DryRunInstigationTick {
      evaluationResult { runRequests { runKey } skipReason error { message } }
    }
    ... on PythonError { message }
  }
}
"""


@pytest.mark.parametrize("sensor", ["landing_zone_sensor", "decision_log_sensor"])
def test_after_the_demo_the_sensors_start_quiet(demo, ui, sensor):
    _, context = ui
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": sensor}
    state = graphql(context, SENSOR, {"selector": selector})["sensorOrError"]["sensorState"]
    assert state["status"] == "RUNNING"  # still running by default
    cursor = state["typeSpecificData"]["lastCursor"]
    assert cursor is not None
    if sensor == "landing_zone_sensor":
        data_dir = demo[0]
        assert cursor == str(read_log(LakePaths.at(data_dir), after_seq=0)[-1].seq)

    # "Test sensor" in the UI: evaluated from the stored cursor, it requests nothing.
    tick = graphql(context, DRY_RUN, {"selector": selector, "cursor": cursor})["sensorDryRun"]
    result = tick["evaluationResult"]
    assert result["error"] is None and result["runRequests"] == [] and result["skipReason"]
    # ...while from an empty cursor the landing sensor would re-request every day.
    if sensor == "landing_zone_sensor":
        tick = graphql(context, DRY_RUN, {"selector": selector, "cursor": None})["sensorDryRun"]
        assert len(tick["evaluationResult"]["runRequests"]) == DAYS


PARTITIONS = """
query Partitions($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) { ... on AssetNode { partitionKeys } }
}
"""


def test_partitions_start_at_the_demos_first_day(demo, ui):
    _, context = ui
    days = _days(demo)
    keys = graphql(context, PARTITIONS, {"key": {"path": ["outcome_events"]}})["assetNodeOrError"][
        "partitionKeys"
    ]
    assert keys[0] == days[0]
    assert keys[: len(days)] == days  # no "Missing (693)": the partitions are the data's days (and today)
    assert len(keys) <= len(days) + 2


def _days(demo) -> list[str]:
    data_dir = demo[0]
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT DISTINCT CAST(event_date AS VARCHAR) FROM outcome_events ORDER BY 1"
        ).fetchall()
    return [day for (day,) in rows]


def latest_metadata(instance, asset: str) -> dict:
    [record] = instance.fetch_materializations(dg.AssetKey(asset), limit=1).records
    return dict(record.asset_materialization.metadata)


def test_the_demo_leaves_a_summary_numbers_to_chart_and_links_to_mlflow(demo, ui):
    instance, _ = ui
    summary = latest_metadata(instance, "learning_summary")
    assert summary["live_version"] == dg.MetadataValue.int(1)  # the operator made v1 live
    assert summary["accepted_events"] == dg.MetadataValue.int(4500)
    assert isinstance(summary["open_alerts"], dg.IntMetadataValue)
    assert "- **live**: v1" in summary["summary"].value and "v1: **accepted**" in summary["summary"].value

    evaluation = latest_metadata(instance, "policy_evaluation")
    assert (
        isinstance(evaluation["improvement"], dg.FloatMetadataValue) and evaluation["improvement"].value > 0
    )

    versions = latest_metadata(instance, "model_versions")
    run_id = versions["mlflow_run_id"].value
    assert versions["mlflow_model_version"] == dg.MetadataValue.url(
        "http://127.0.0.1:5000/#/models/agent-router/versions/1"
    )
    assert versions["mlflow_run"].value.startswith("http://127.0.0.1:5000/#/experiments/")
    assert versions["mlflow_run"].value.endswith(f"/runs/{run_id}")

    # numbers Dagster charts: per day, per run of the all-days assets
    daily = latest_metadata(instance, "agent_daily_stats")
    assert isinstance(daily["success_rate"], dg.FloatMetadataValue) and 0 < daily["success_rate"].value < 1
    stats = latest_metadata(instance, "agent_stats")
    assert 0 < stats["success_rate_all_time"].value < 1
    posteriors = latest_metadata(instance, "agent_posteriors")
    assert 0 < posteriors["min_best_p_best"].value <= 1
    assert isinstance(posteriors["mean_best_posterior_mean"], dg.FloatMetadataValue)

    events = latest_metadata(instance, "outcome_events")
    assert isinstance(events["accepted"], dg.IntMetadataValue) and isinstance(
        events["quarantined"], dg.IntMetadataValue
    )


AUTOMATION_TICK = """
import dagster as dg
from learning_pipeline.definitions import defs
with dg.DagsterInstance.get() as instance:
    result = dg.evaluate_automation_conditions(defs=defs(), instance=instance)
print(result.total_requested)
"""


def test_after_the_demo_automation_requests_nothing(demo):
    """The automation sensor's first tick under `make ui` (a fresh cursor) finds nothing to run."""
    data_dir, home, _ = demo
    env = {**os.environ, DATA_DIR_ENV: str(data_dir), "DAGSTER_HOME": str(home)}
    env.pop("LEARNING_PIPELINE_START_DATE", None)
    out = subprocess.run(
        [sys.executable, "-c", AUTOMATION_TICK], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "0"
