"""The ERROR alert of a failed run, through the run-failure sensor's evaluation: its message names each failed
step with its root cause's one-line message and ends with one sentence saying what to do."""

import dagster as dg

from learning_pipeline.defs.autonomy.resources import AutonomyResource
from learning_pipeline.defs.autonomy.sensors import run_failure_alert_sensor
from learning_pipeline.lib.autonomy.alerts import AlertStore


@dg.op
def candidate_policy():
    try:
        {}["2026-01-05"]
    except KeyError as missing:  # the root cause is the innermost error, not the wrapper
        raise RuntimeError("training failed") from missing


@dg.op
def agent_posteriors():
    raise dg.Failure("no daily aggregates in the lake yet: materialize agent_daily_stats first")


@dg.op
def policy_evaluation():
    raise ValueError("no events in the training window 2026-01-02..2026-01-04\nmore detail on a second line")


@dg.job
def learning_cycle_job():
    candidate_policy()
    agent_posteriors()
    policy_evaluation()


def alert_of_failed_run(job: dg.JobDefinition, lake) -> dict:
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        [failure] = [e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE"]
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_alert_sensor",
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            dagster_event=failure,
            resources={"lake": lake, "autonomy": AutonomyResource()},
        ).for_run_failure()
        run_failure_alert_sensor(context)
    [row] = AlertStore(lake.paths).list().to_dict("records")
    return {**row, "run_id": result.dagster_run.run_id}


def test_the_alert_carries_each_root_cause_and_what_to_do(lake):
    alert = alert_of_failed_run(learning_cycle_job, lake)
    assert alert["title"] == "run of learning_cycle_job failed" and alert["severity"] == "CRITICAL"
    causes, sep, advice = alert["message"].partition(". What to do: ")
    assert sep, alert["message"]
    assert sorted(causes.split("; ")) == [
        "agent_posteriors: no daily aggregates in the lake yet: materialize agent_daily_stats first",
        "candidate_policy: KeyError: '2026-01-05'",
        "policy_evaluation: ValueError: no events in the training window 2026-01-02..2026-01-04",
    ]
    assert "Steps failed" not in alert["message"] and "dagster._core" not in alert["message"]
    # one sentence, naming the run to re-execute
    assert advice.endswith(".") and advice.count(". ") == 0
    assert f"re-execute run {alert['run_id']} from failure" in advice


@dg.job
def daily_job():
    policy_evaluation()


def test_an_alert_for_another_job_says_the_same(lake):
    alert = alert_of_failed_run(daily_job, lake)
    assert alert["severity"] == "WARNING"
    assert alert["message"].startswith(
        "policy_evaluation: ValueError: no events in the training window 2026-01-02..2026-01-04. What to do: "
    )
