"""The cursors the demo stores for the landing and decision-log sensors: from them a sensor requests nothing
for what the demo ingested, and still requests what arrives afterwards."""

import os

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from learning_pipeline.defs.decisions.sensors import decision_cursor_through_now, decision_log_sensor
from learning_pipeline.defs.events.sensors import landing_cursor_through_staged, landing_zone_sensor
from learning_pipeline.lib.events.decisions import decision_log_dir
from learning_pipeline.lib.events.staging import stage_pending
from learning_pipeline.lib.storage.lake import land_records


def event(event_id: str, timestamp: str) -> dict:
    return {"event_id": event_id, "agent_name": "a", "status": "success", "timestamp": timestamp}


def tick(sensor, lake, instance, cursor):
    return sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources={"lake": lake}))


def test_landing_cursor_covers_every_staged_file(lake):
    assert landing_cursor_through_staged(lake.paths) is None  # nothing staged: no cursor to set
    land_records(lake.paths.landing, [event("a", "2025-10-09T10:00:00Z"), event("b", "2025-10-11T10:00:00Z")])
    land_records(lake.paths.landing, [event("c", "2025-10-10T10:00:00Z")])
    stage_pending(lake.paths, lake.staging_rules())  # what the demo does before running the days itself
    cursor = landing_cursor_through_staged(lake.paths)

    with dg.instance_for_test() as instance:
        assert isinstance(tick(landing_zone_sensor, lake, instance, cursor), dg.SkipReason)
        assert len(tick(landing_zone_sensor, lake, instance, None).run_requests) == 3  # without it: every day

        land_records(lake.paths.landing, [event("late", "2025-10-10T23:00:00Z")])
        later = tick(landing_zone_sensor, lake, instance, cursor)
        assert [r.partition_key for r in later.run_requests] == ["2025-10-10"]


def write_decision_file(lake, day: str, name: str, mtime_ns: int) -> None:
    directory = decision_log_dir(lake.paths) / f"event_date={day}"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    pq.write_table(pa.table({"decision_id": [name]}), path)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_decision_cursor_covers_every_decision_file(lake):
    with dg.instance_for_test() as instance:
        assert decision_cursor_through_now(lake.paths) == "{}"
        assert isinstance(tick(decision_log_sensor, lake, instance, "{}"), dg.SkipReason)

        write_decision_file(lake, "2025-10-09", "a.parquet", 1_000_000_000_000)
        write_decision_file(lake, "2025-10-10", "b.parquet", 2_000_000_000_000)
        cursor = decision_cursor_through_now(lake.paths)
        assert isinstance(tick(decision_log_sensor, lake, instance, cursor), dg.SkipReason)
        assert len(tick(decision_log_sensor, lake, instance, None)) == 2  # without it: every day

        write_decision_file(lake, "2025-10-10", "c.parquet", 3_000_000_000_000)
        requests = tick(decision_log_sensor, lake, instance, cursor)
        assert [r.partition_key for r in requests] == ["2025-10-10"]
