"""The production dagster.yaml against the real local PostgreSQL: a materialization is stored there."""

import json
import shutil
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from learning_pipeline.defs.events.assets import outcome_events
from learning_pipeline.lib.storage.lake import land_records

PROJECT_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.postgres


def test_materialization_is_stored_in_postgres(tmp_path, lake, dagster_pg_url):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    land_records(
        lake.paths.landing,
        [
            {"event_id": "pg-1", "agent_name": "a", "status": "success", "timestamp": "2025-10-09T10:00:00Z"},
            {"event_id": "pg-2", "agent_name": "b", "status": "failure", "timestamp": "2025-10-09T11:00:00Z"},
        ],
    )

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        result = dg.materialize(
            [outcome_events], partition_key="2025-10-09", instance=instance, resources={"lake": lake}
        )
        assert result.success
        run_id = result.run_id

    with psycopg2.connect(dagster_pg_url.replace("+psycopg2", "")) as conn, conn.cursor() as cur:
        cur.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,))
        assert cur.fetchone() == ("SUCCESS",)
        cur.execute(
            "SELECT asset_key, partition FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
            (run_id,),
        )
        stored = {
            (json.loads(key)[0] if key.startswith("[") else key, partition)
            for key, partition in cur.fetchall()
        }
    assert stored == {("outcome_events", "2025-10-09"), ("quarantined_events", "2025-10-09")}


def test_instance_limits_the_warehouse_pool_to_one_writer(tmp_path, dagster_pg_url):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.global_op_concurrency_default_limit == 1
