"""`learning-pipeline autonomy-demo` as a user runs it (a subprocess, the fewest days with a cycle before and
after the switch), then looked at through the instance and the GraphQL API the Dagster UI uses: every run came
from the code location the UI loads, the simulated clock reached the runs as run config, and a run re-executed
from the UI decides at the same simulated time."""

import sys
from datetime import UTC, datetime, time

import dagster as dg
import pytest

from learning_pipeline.lib.autonomy.alerts import AlertStore
from learning_pipeline.lib.storage.lake import LakePaths
from learning_pipeline_tests.cli._dagster_ui import LOCATION, reexecute, run_demo, ui_context

DAYS, SWITCH_DAY = 5, 4  # cycles start on day 4: one before the switch, one after


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("autonomy_demo")
    data_dir, home = root / "data", root / "dagster_home"
    command = [
        *(sys.executable, "-m", "learning_pipeline.cli", "autonomy-demo"),
        *("--data-dir", str(data_dir), "--dagster-home", str(home)),
        *("--days", str(DAYS), "--switch-day", str(SWITCH_DAY), "--events-per-day", "600"),
    ]
    return data_dir, home, run_demo(command)


@pytest.fixture(scope="module")
def ui(demo):
    with ui_context(*demo[:2]) as ui:
        yield ui


def simulated_evenings(instance) -> list[str]:
    """The simulated clock of each day: 23:00 UTC of the daily runs' partitions."""
    days = sorted(r.tags["dagster/partition"] for r in instance.get_runs(dg.RunsFilter(job_name="daily_job")))
    return [datetime.combine(datetime.fromisoformat(d), time(23), tzinfo=UTC).isoformat() for d in days]


def clock_of(run: dg.DagsterRun) -> str:
    return run.run_config["resources"]["autonomy"]["config"]["now"]


def test_every_run_of_the_autonomy_demo_is_a_run_of_the_code_location(demo, ui):
    _, _, out = demo
    instance, _ = ui
    runs = [r for r in instance.get_runs() if r.parent_run_id is None]
    cycles = [r for r in runs if r.job_name == "learning_cycle_job"]
    assert sorted(r.job_name for r in runs if r.job_name != "learning_cycle_job") == (
        ["autonomy_job"] * DAYS + ["daily_job"] * DAYS
    )
    assert len(cycles) == DAYS - 3  # the sensor requested a cycle on every day after the training window
    assert out.stdout.count("cycle ok") == len(cycles)
    for run in runs:
        assert run.status == dg.DagsterRunStatus.SUCCESS, out.stdout  # the demo prints why a run failed
        assert run.remote_job_origin is not None and run.job_code_origin is not None
        assert run.remote_job_origin.location_name == LOCATION
    evenings = simulated_evenings(instance)
    for run in cycles:  # what the sensor requested at the simulated time: its day, its trigger and reason
        assert run.tags["learning_pipeline/trigger"] == "continuous_learning_sensor"
        assert "new events since the last cycle" in run.tags["learning_pipeline/reason"]
        assert f"{run.tags['dagster/partition']}T23:00:00+00:00" in evenings


def test_the_simulated_clock_reaches_the_runs_as_run_config(demo, ui):
    data_dir, _, _ = demo
    instance, _ = ui
    autonomy_runs = sorted(
        (r for r in instance.get_runs(dg.RunsFilter(job_name="autonomy_job")) if r.parent_run_id is None),
        key=clock_of,
    )
    evenings = simulated_evenings(instance)
    assert [clock_of(r) for r in autonomy_runs] == evenings
    # The alerts those runs raised are stamped with the simulated time, not the wall clock.
    alerts = AlertStore(LakePaths.at(data_dir)).list()
    assert len(alerts) > 0
    assert {t.isoformat() for t in alerts["created_at"].dt.to_pydatetime()} <= set(evenings)


def test_a_run_re_executed_from_the_ui_keeps_its_simulated_clock(demo, ui):
    instance, context = ui
    parent = max(
        (r for r in instance.get_runs(dg.RunsFilter(job_name="autonomy_job")) if r.parent_run_id is None),
        key=clock_of,
    )
    run = reexecute(instance, context, parent.run_id)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert clock_of(run) == clock_of(parent)
