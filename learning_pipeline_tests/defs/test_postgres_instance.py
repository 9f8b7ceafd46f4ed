"""The production dagster.yaml against the real local PostgreSQL: a materialization is stored there."""

import json
import shutil
import uuid
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from learning_pipeline.defs.events.assets import outcome_events
from learning_pipeline.lib.storage.lake import land_records

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"

pytestmark = pytest.mark.postgres


@pytest.fixture
def postgres_url():
    name = f"dagster_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(PG_ADMIN_DSN)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_materialization_is_stored_in_postgres(tmp_path, lake, postgres_url, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_PG_URL", postgres_url)
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

    with psycopg2.connect(postgres_url.replace("+psycopg2", "")) as conn, conn.cursor() as cur:
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


def test_instance_limits_the_warehouse_pool_to_one_writer(tmp_path, postgres_url, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_PG_URL", postgres_url)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.global_op_concurrency_default_limit == 1
