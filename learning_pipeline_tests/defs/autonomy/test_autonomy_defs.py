"""The autonomy domain in the code location, the after-cycle trigger, and concurrent alert writers."""

import multiprocessing
from datetime import UTC, datetime

import dagster as dg

from learning_pipeline.defs.autonomy.sensors import after_learning_cycle_sensor
from learning_pipeline.lib.autonomy.alerts import Alert, AlertStore
from learning_pipeline.lib.storage.lake import LakePaths


def test_schedules_and_sensors_are_in_the_code_location(monkeypatch):
    from learning_pipeline.definitions import defs as code_location

    defs = code_location()

    repo = defs.get_repository_def()
    schedule = repo.get_schedule_def("learning_cycle_schedule")
    assert schedule.job_name == "learning_cycle_job" and schedule.cron_schedule == "0 */6 * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert repo.get_schedule_def("learning_schedule").job_name == "learning_job"
    assert repo.get_sensor_def("continuous_learning_sensor").default_status == dg.DefaultSensorStatus.STOPPED
    assert repo.get_sensor_def("run_failure_alert_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    for job in ("autonomy_job", "graduation_approval_job", "candidate_approval_job"):
        assert repo.has_job(job)


@dg.op
def ok_op():
    return 1


@dg.job
def learning_cycle_job():
    ok_op()


@dg.job
def learning_job():
    ok_op()


def test_after_learning_cycle_sensor_requests_the_autonomy_job():
    with dg.instance_for_test() as instance:
        for job, expect in ((learning_cycle_job, True), (learning_job, False)):
            result = job.execute_in_process(instance=instance)
            success = [e for e in result.all_events if e.event_type_value == "PIPELINE_SUCCESS"][0]
            context = dg.build_run_status_sensor_context(
                sensor_name="after_learning_cycle_sensor",
                dagster_instance=instance,
                dagster_run=result.dagster_run,
                dagster_event=success,
            )
            out = after_learning_cycle_sensor(context)
            assert isinstance(out, dg.RunRequest) == expect
            if expect:
                assert out.run_key == f"after-{result.dagster_run.run_id}"


def _writer(root: str, worker: int) -> None:
    store = AlertStore(LakePaths.at(root))
    now = datetime(2026, 11, 3, tzinfo=UTC)
    for i in range(10):
        store.raise_alert(
            Alert("MILESTONE", "INFO", f"w{worker} {i}", "m", dedup_key=f"k{worker}-{i}"), now=now
        )
        # every worker also tries the same shared condition: it must be stored once
        store.raise_alert(Alert("CONVERGENCE", "INFO", "shared", "m", dedup_key="shared"), now=now)


def test_concurrent_writers_lose_nothing_and_dedup_holds(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs)
    alerts = AlertStore(LakePaths.at(tmp_path)).list()
    assert len(alerts) == 31 and (alerts["dedup_key"] == "shared").sum() == 1
    # the lake snapshot carries the same rows
    from learning_pipeline.lib.storage.warehouse import lake_connection

    with lake_connection(LakePaths.at(tmp_path)) as con:
        assert con.execute("SELECT count(*) FROM agent_alerts").fetchone()[0] == 31
