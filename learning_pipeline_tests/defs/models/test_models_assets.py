"""The models domain end to end: materialized assets, MLflow registry (sqlite in a temp dir), lake tables,
rollback (job and CLI), the champion loaded in a fresh process and served by `mlflow models serve`."""

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from learning_pipeline.defs.models.assets import (
    candidate_policy,
    model_versions,
    model_versions_match_registry,
    policy_evaluation,
    rollback_job,
)
from learning_pipeline.lib.learning import registry
from learning_pipeline.lib.storage.warehouse import lake_connection
from learning_pipeline_tests._models_fixtures import models_lake, operator_makes_live
from learning_pipeline_tests._servers import free_port, http_server

PYTHON = sys.executable
REPO = Path(__file__).resolve().parents[3]
ASSETS = [candidate_policy, policy_evaluation, model_versions, model_versions_match_registry]
RUN_CONFIG = {
    "ops": {
        "candidate_policy": {"config": {"window_days": 6, "contextual_model": True, "validation_days": 2}},
        "policy_evaluation": {"config": {"n_bootstrap": 200}},
    }
}


@pytest.fixture(scope="module")
def materialized(tmp_path_factory):
    paths, resources, truth = models_lake(
        tmp_path_factory.mktemp("models") / "data",
        days=10,
        events_per_day=1500,
        seed=4,
        end_date="2025-03-10",
    )
    results = {}
    for partition in ("2025-03-08", "2025-03-09", "2025-03-10"):
        results[partition] = dg.materialize(
            ASSETS, partition_key=partition, resources=resources, run_config=RUN_CONFIG
        )
        newest = registry.model_versions_frame(resources["mlflow"].uri).iloc[-1]
        if newest["gate"] == "accepted":  # an operator who makes every accepted version live
            operator_makes_live(paths, resources["mlflow"].uri, int(newest["version_number"]))
    return paths, resources, results, truth


def test_assets_register_versions_with_lineage_and_aliases(materialized):
    paths, resources, results, _ = materialized
    assert all(r.success for r in results.values())
    uri = resources["mlflow"].uri
    assert uri.startswith("sqlite:///") and str(paths.root) in uri
    versions = registry.model_versions_frame(uri)
    assert versions["version_number"].tolist() == [1, 2, 3]
    first = versions.iloc[0]
    assert first["gate"] == "accepted" and pd.isna(first["parent_version"])  # accepted against uniform random
    champion = int(versions.loc[versions["status"] == "active", "version_number"].iloc[0])
    assert (versions["status"] == "active").sum() == 1
    assert "champion" in versions.loc[versions["version_number"] == champion, "aliases"].iloc[0]
    assert "challenger" in versions.iloc[-1]["aliases"]  # every evaluated version becomes @challenger
    # lineage: each later version names the champion it was compared with
    for row in versions.iloc[1:].itertuples():
        assert row.parent_version >= 1 and row.parent_version < row.version_number
    rejected = versions[versions["gate"] == "rejected"]
    assert (rejected["status"] == "archived").all() and rejected["gate_reason"].str.len().gt(0).all()

    evaluation = results["2025-03-08"].asset_materializations_for_node("policy_evaluation")[0].metadata
    assert evaluation["estimator"].value == "dr"
    check = results["2025-03-10"].get_asset_check_evaluations()[0]
    assert check.passed


def test_run_has_params_metrics_artifacts_and_tags(materialized):
    _, resources, results, _ = materialized
    uri = resources["mlflow"].uri
    with registry.tracking(uri) as client:
        mv = client.get_model_version(registry.REGISTERED_MODEL, "2")
        run = client.get_run(mv.run_id)
        artifacts = {a.path for a in client.list_artifacts(mv.run_id)} | {
            a.path for d in ("plots", "posteriors") for a in client.list_artifacts(mv.run_id, d)
        }
        exp = client.get_experiment(run.info.experiment_id)
    assert exp.name == registry.EXPERIMENT_NAME
    assert exp.artifact_location.startswith("file://") and "mlartifacts" in exp.artifact_location
    for key in ("alpha0", "beta0", "half_life_days", "window_days", "train_start", "cutoff", "partitions"):
        assert key in run.data.params
    assert run.data.params["baseline_kind"] == "champion"  # version 2 was evaluated against live version 1
    for key in (
        "baseline_score",
        "candidate_score",
        "improvement",
        "samples",
        "candidate.dr",
        "candidate.dr_ci_low",
        "candidate.snips",
        "candidate.ips",
        "candidate.replay",
        "candidate.brier",
        "candidate.log_loss",
        # weight diagnostics of every evaluation, per policy (lib/bandit/ope.py)
        "candidate.ess",
        "candidate.max_weight",
        "candidate.clipped_share",
        "baseline.ess",  # stable names whatever the baseline; its kind is a param
        "relative_improvement",
        "gate_threshold",
    ):
        assert key in run.data.metrics, key
    assert run.data.tags["partition"] == "2025-03-09"
    assert run.data.tags["parent_version"] == "1"
    assert run.data.tags["dagster_run_id"] == results["2025-03-09"].run_id
    assert {
        "plots/posterior_densities.png",
        "plots/success_over_time.png",
        "posteriors/posteriors.parquet",
        "gate.json",
        "estimates.csv",
    } <= artifacts


def test_lake_tables_are_queryable_and_match_the_registry(materialized):
    paths, resources, _, _ = materialized
    with lake_connection(paths) as con:
        mv = con.execute("SELECT version_number, status FROM model_versions ORDER BY 1").df()
        le = con.execute(
            "SELECT event_type, model_version_id, reason, improvement, duration_ms, partition_key "
            "FROM learning_events ORDER BY created_at"
        ).df()
    reg = registry.model_versions_frame(resources["mlflow"].uri)
    assert mv.values.tolist() == reg[["version_number", "status"]].values.tolist()
    assert len(le) == 3 and le["event_type"].str.startswith("evaluation_").all()
    assert le["reason"].str.len().gt(0).all() and (le["duration_ms"] > 0).all()
    assert le["partition_key"].tolist() == ["2025-03-08", "2025-03-09", "2025-03-10"]


def test_champion_loads_in_a_fresh_process(materialized):
    _, resources, _, truth = materialized
    script = (
        "import json, mlflow, pandas as pd\n"
        "m = mlflow.pyfunc.load_model('models:/agent-router@champion')\n"
        "out = m.predict(pd.DataFrame({'task_type': ['analysis', 'planning'], 'complexity': ['high', None],"
        " 'domain': ['legal', 'general']}), params={'top_k': 2})\n"
        "print(json.dumps({'agents': out['agents'].tolist(), 'top': out['agent_name'].tolist(),"
        " 'propensities': out['propensities'].tolist(),"
        " 'inputs': [c.name for c in m.metadata.get_input_schema().inputs]}))\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": resources["mlflow"].uri}
    proc = subprocess.run(
        [PYTHON, "-c", script], cwd="/", env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [len(a) for a in out["agents"]] == [2, 2]
    assert out["inputs"] == ["task_type", "complexity", "domain", "top_k", "candidate_agents"]
    # every returned agent carries its selection probability, best first
    assert all(0 < p <= 1 for row in out["propensities"] for p in row)
    assert all(row == sorted(row, reverse=True) for row in out["propensities"])
    best = truth.best_agents()
    assert out["top"][0] == best["analysis"] and out["top"][1] == best["planning"]


@pytest.mark.slow
def test_mlflow_models_serve_serves_the_champion(materialized, tmp_path):
    _, resources, _, _ = materialized
    port = free_port()
    bin_dir = str(Path(PYTHON).parent)  # the scoring server runs `uvicorn` from PATH
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": resources["mlflow"].uri,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
    }
    command = [str(Path(bin_dir) / "mlflow"), "models", "serve", "-m", "models:/agent-router@champion"]
    command += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    with http_server(command, tmp_path / "serve.log", f"http://127.0.0.1:{port}/ping", cwd="/", env=env):
        body = json.dumps(
            {"dataframe_records": [{"task_type": "analysis", "complexity": "low"}], "params": {"top_k": 3}}
        ).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            payload = json.loads(r.read())
        rows = payload["predictions"]
        assert (
            len(rows) == 1 and len(rows[0]["agents"]) == 3 and rows[0]["agent_name"] == rows[0]["agents"][0]
        )


def test_rollback_job_refuses_an_unapproved_version_unless_forced_and_records_who(materialized):
    from learning_pipeline.lib.autonomy import operations

    paths, resources, _, _ = materialized
    uri = resources["mlflow"].uri
    with registry.tracking(uri) as client:
        before = registry.current_champion(client)
    assert before == 1  # the only version the operator made live
    target = 2  # never approved (rejected by the gate or still a candidate)

    def run(force: bool):
        config = {"version": target, "reason": "bad live metrics", "by": "alice", "force": force}
        return rollback_job.execute_in_process(
            run_config={"ops": {"rollback_champion": {"config": config}}},
            resources=resources,
            raise_on_error=False,
        )

    refused = run(force=False)
    assert not refused.success
    with registry.tracking(uri) as client:
        assert registry.current_champion(client) == before  # nothing served changed
    assert run(force=True).success
    versions = registry.model_versions_frame(uri)
    assert versions.loc[versions["status"] == "active", "version_number"].tolist() == [target]
    assert versions.loc[versions["version_number"] == target, "rollback_reason"].iloc[0] == "bad live metrics"
    with lake_connection(paths) as con:
        row = con.execute(
            "SELECT model_version_id, reason, parent_version, metrics_after FROM learning_events "
            "WHERE event_type = 'rollback'"
        ).fetchone()
        lake_active = con.execute(
            "SELECT version_number FROM model_versions WHERE status = 'active'"
        ).fetchall()
    assert row[:3] == (f"agent-router/{target}", "bad live metrics", before)
    assert json.loads(row[3]) == {"champion": target, "by": "alice", "forced": True}
    assert lake_active == [(target,)]
    # errors are clear, not crashes
    with pytest.raises(ValueError, match="already live"):
        operations.rollback(paths, uri, target, "alice", "again")
    with pytest.raises(ValueError, match="no version 99"):
        operations.rollback(paths, uri, 99, "alice", "nope")
    with pytest.raises(ValueError, match="needs --by and --reason"):
        operations.rollback(paths, uri, 1, "alice", " ")


def test_cli_rollback(materialized, capsys):
    from learning_pipeline import cli

    paths, resources, _, _ = materialized
    uri = resources["mlflow"].uri
    with registry.tracking(uri) as client:
        before = registry.current_champion(client)
    # v1 was approved and live before: no --force needed; v2 was never approved: --force
    target = 1 if before != 1 else 2
    force = [] if target == 1 else ["--force"]
    args = [
        "rollback",
        "--data-dir",
        str(paths.root),
        "--version",
        str(target),
        "--reason",
        "operator request",
    ]
    assert cli.main([*args, *force, "--by", "bob", "--json"]) == 0
    info = json.loads(capsys.readouterr().out.strip())
    assert info["version"] == target and info["previous_champion"] == before and info["by"] == "bob"
    with registry.tracking(uri) as client:
        assert registry.current_champion(client) == target
    # a never-approved version is refused with a clear message and exit code 2
    assert cli.main(["rollback", "--data-dir", str(paths.root), "--version", "3", "--reason", "x"]) == 2
    assert "--force" in capsys.readouterr().err
    # a bad version is a clear error with exit code 2
    assert cli.main(["rollback", "--data-dir", str(paths.root), "--version", "42", "--reason", "x"]) == 2
    assert "no version 42" in capsys.readouterr().err
