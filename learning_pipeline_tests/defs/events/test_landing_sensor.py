"""The landing-zone sensor through its evaluation function, with a real instance and cursor."""

import json
from datetime import UTC

import dagster as dg

from learning_pipeline.defs.events.sensors import landing_zone_sensor
from learning_pipeline.lib.storage.lake import land_records


def event(event_id: str, timestamp: str) -> dict:
    return {"event_id": event_id, "agent_name": "a", "status": "success", "timestamp": timestamp}


def tick(lake, instance, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"lake": lake})
    return landing_zone_sensor(context), context


def test_new_files_request_exactly_the_days_they_touch(lake):
    with dg.instance_for_test() as instance:
        land_records(
            lake.paths.landing, [event("a", "2025-10-09T10:00:00Z"), event("b", "2025-10-11T10:00:00Z")]
        )
        land_records(lake.paths.landing, [event("c", "2025-10-11T23:00:00Z")])

        result, _ = tick(lake, instance)
        assert sorted(r.partition_key for r in result.run_requests) == ["2025-10-09", "2025-10-11"]
        assert all(r.run_key for r in result.run_requests)

        # Nothing new: nothing requested.
        again, _ = tick(lake, instance, cursor=result.cursor)
        assert isinstance(again, dg.SkipReason)

        # A late file for an old day requests only that day.
        land_records(lake.paths.landing, [event("late", "2025-10-09T23:59:00Z")])
        late, _ = tick(lake, instance, cursor=result.cursor)
        assert [r.partition_key for r in late.run_requests] == ["2025-10-09"]
        assert int(late.cursor) > int(result.cursor)


def test_a_restarted_sensor_does_not_rerequest_old_files(lake):
    with dg.instance_for_test() as instance:
        land_records(lake.paths.landing, [event("a", "2025-10-09T10:00:00Z")])
        first, _ = tick(lake, instance)
        assert len(first.run_requests) == 1
        # A new sensor process starts from the stored cursor: files already staged stay handled.
        restarted, _ = tick(lake, instance, cursor=first.cursor)
        assert isinstance(restarted, dg.SkipReason)


def test_a_file_staged_by_a_run_still_requests_its_other_days(lake):
    """Staging done elsewhere (e.g. by a manual materialization) is still turned into run requests."""
    from learning_pipeline.lib.events.staging import stage_pending

    with dg.instance_for_test() as instance:
        land_records(
            lake.paths.landing, [event("a", "2025-10-09T10:00:00Z"), event("b", "2025-10-12T10:00:00Z")]
        )
        stage_pending(lake.paths, lake.staging_rules())
        result, _ = tick(lake, instance)
        assert sorted(r.partition_key for r in result.run_requests) == ["2025-10-09", "2025-10-12"]


def test_malformed_files_still_trigger_their_arrival_day(lake):
    from datetime import datetime

    with dg.instance_for_test() as instance:
        (lake.paths.landing / "junk.jsonl").write_text("not json\n" + json.dumps({"no": "fields"}) + "\n")
        result, _ = tick(lake, instance)
        assert [r.partition_key for r in result.run_requests] == [datetime.now(UTC).date().isoformat()]


def test_daily_schedule_rematerializes_the_day_that_just_ended():
    from datetime import datetime

    from learning_pipeline.defs.orchestration.definitions import daily_job_schedule

    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 3, 10, 0, 15, tzinfo=UTC))
    request = daily_job_schedule(context)
    assert request.partition_key == "2026-03-09"


def test_warehouse_views_follow_new_lake_tables(lake):
    """After a run, the warehouse file gets a view for every lake table, including new ones."""
    import duckdb
    import pyarrow as pa

    from learning_pipeline.defs.events.sensors import warehouse_views_sensor
    from learning_pipeline.lib.storage.lake import write_parquet_atomic

    @dg.asset
    def agent_stats_fixture():
        write_parquet_atomic(
            lake.paths.table("agent_stats") / "data.parquet",
            pa.table({"agent_name": ["a"], "executions": [3]}),
        )

    with dg.instance_for_test() as instance:
        run_id = dg.materialize([agent_stats_fixture], instance=instance).run_id
        [success] = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_SUCCESS).records
        context = dg.build_run_status_sensor_context(
            sensor_name="warehouse_views_sensor",
            dagster_instance=instance,
            dagster_run=instance.get_run_by_id(run_id),
            dagster_event=success.event_log_entry.dagster_event,
            resources={"lake": lake},
        )
        warehouse_views_sensor(context)
    with duckdb.connect(str(lake.paths.warehouse), read_only=True) as con:
        assert con.execute("SELECT agent_name, executions FROM agent_stats").fetchall() == [("a", 3)]
