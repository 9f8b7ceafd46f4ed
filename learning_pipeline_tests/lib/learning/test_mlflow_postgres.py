"""A learning cycle against a real `mlflow server` on loopback, backed by the local PostgreSQL."""

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

from learning_pipeline.lib.learning import registry
from learning_pipeline.lib.learning.cycle import CycleConfig, run_cycle
from learning_pipeline.lib.storage.warehouse import lake_connection
from learning_pipeline_tests._models_fixtures import operator_makes_live, simulated_lake
from learning_pipeline_tests._servers import free_port, http_server, postgres_database

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
PYTHON = sys.executable


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    bin_dir = Path(PYTHON).parent
    env = {**os.environ, "PATH": str(bin_dir) + os.pathsep + os.environ.get("PATH", "")}
    env.pop("MLFLOW_TRACKING_URI", None)
    uri = f"http://127.0.0.1:{port}"
    with postgres_database("mlflow_test") as db:
        command = [str(bin_dir / "mlflow"), "server", "--backend-store-uri"]
        command += [f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{db}"]
        command += ["--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1"]
        command += ["--port", str(port), "--workers", "1"]
        with http_server(command, root / "server.log", f"{uri}/health", cwd=str(root), env=env):
            yield uri, db, root


def test_learning_cycle_against_a_postgres_backed_tracking_server(tracking_server, tmp_path):
    uri, db, server_root = tracking_server
    paths, cfg, truth = simulated_lake(
        tmp_path / "data", days=9, events_per_day=1500, seed=8, end_date="2025-03-09", propensities=True
    )
    config = CycleConfig(window_days=6, contextual_model=False, n_bootstrap=200)
    first = run_cycle(paths, "2025-03-08", config, uri, tags={"dagster_run_id": "manual"})
    operator_makes_live(paths, uri, first.registered.version)
    second = run_cycle(paths, "2025-03-09", config, uri)
    if second.registered.accepted:
        operator_makes_live(paths, uri, second.registered.version)
    assert first.registered.accepted and first.registered.version == 1
    assert second.registered.version == 2 and second.registered.parent_version == 1

    # the registry lives in PostgreSQL, the artifacts under the server's artifacts destination
    con = psycopg2.connect(dbname=db, **PG)
    try:
        with con.cursor() as cur:
            cur.execute("SELECT version FROM model_versions WHERE name = 'agent-router' ORDER BY version")
            assert [r[0] for r in cur.fetchall()] == [1, 2]
            cur.execute("SELECT alias, version FROM registered_model_aliases WHERE name = 'agent-router'")
            aliases = dict(cur.fetchall())
    finally:
        con.close()
    assert aliases["challenger"] == 2 and aliases["champion"] == (2 if second.registered.accepted else 1)
    assert any((server_root / "artifacts").rglob("posteriors.parquet"))

    # the lake table agrees with the server's registry
    with lake_connection(paths) as lake:
        table = lake.execute("SELECT version_number, status FROM model_versions ORDER BY 1").fetchall()
    expected = registry.model_versions_frame(uri)[["version_number", "status"]]
    assert table == [tuple(r) for r in expected.itertuples(index=False)]

    # a fresh process loads the champion through the server
    script = (
        "import json, mlflow, pandas as pd\n"
        "m = mlflow.pyfunc.load_model('models:/agent-router@champion')\n"
        "out = m.predict(pd.DataFrame({'task_type': ['analysis']}))\n"
        "print(json.dumps(out['agents'].tolist()))\n"
    )
    proc = subprocess.run(
        [PYTHON, "-c", script],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(json.loads(proc.stdout.strip().splitlines()[-1])[0]) == 3
