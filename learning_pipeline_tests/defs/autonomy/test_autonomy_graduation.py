"""Approval and stages on a simulated timeline: candidate (pending approval) -> approved (a person) -> shadow
(automatic) -> live (human only: CLI and job; only then @champion), demotion after the best agent changes,
shadow runs in MLflow."""

import dagster as dg
import mlflow
import pytest

from learning_pipeline.cli import main
from learning_pipeline.defs.autonomy.assets import (
    agent_alerts,
    graduation_approval_job,
    graduation_status,
    model_approvals,
)
from learning_pipeline.defs.autonomy.resources import AutonomyResource
from learning_pipeline.defs.models.resources import MlflowResource
from learning_pipeline.defs.resources import LakeResource
from learning_pipeline.lib.autonomy import graduation
from learning_pipeline.lib.autonomy.alerts import AlertStore
from learning_pipeline.lib.learning import registry
from learning_pipeline.lib.learning.cycle import CycleConfig, run_cycle
from learning_pipeline.lib.simulation.simulate import DEFAULT_TASK_TYPES
from learning_pipeline_tests._models_fixtures import simulated_lake

CONFIG = CycleConfig(window_days=3, contextual_model=False, n_bootstrap=100)
ASSETS = [model_approvals, graduation_status, agent_alerts]
CRITERIA = dict(
    graduation_min_cycles=1,
    graduation_min_samples=100,
    graduation_min_success_rate=0.6,
    graduation_consistency_window=2,
    graduation_max_drawdown=0.2,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("graduation") / "data"
    # from 2025-03-08 on, the best agent of every task type changes
    paths, cfg, _ = simulated_lake(
        root,
        days=10,
        events_per_day=1200,
        seed=3,
        end_date="2025-03-10",
        propensities=True,
        switch_day=7,
        switch_task_types=DEFAULT_TASK_TYPES,
    )
    lake = LakeResource(data_dir=str(root))
    ml = MlflowResource(data_dir=str(root))
    first = run_cycle(paths, "2025-03-04", CONFIG, ml.uri, artifact_location=ml.artifact_location)
    assert first.registered.accepted, first.registered.reason
    return paths, lake, ml


def check(world, now, **settings):
    paths, lake, ml = world
    autonomy = AutonomyResource(now=now, **{**CRITERIA, **settings})
    result = dg.materialize(ASSETS, resources={"lake": lake, "mlflow": ml, "autonomy": autonomy})
    assert result.success
    return result


def champion(uri):
    with registry.tracking(uri) as client:
        return registry.current_champion(client)


def test_graduation_timeline(world, capsys):
    paths, lake, ml = world
    # auto-approval off: the accepted version waits for a person and is not the champion meanwhile
    check(world, "2025-03-07T12:00:00+00:00")
    assert graduation.approval_status(paths) == {1: graduation.PENDING}
    assert champion(ml.uri) is None and graduation.current_stages(paths) == {}
    assert (
        main(
            [
                "graduation",
                "approve-candidate",
                "1",
                "--by",
                "alice",
                "--reason",
                "looks right",
                "--data-dir",
                str(paths.root),
                "--tracking-uri",
                ml.uri,
            ]
        )
        == 0
    )
    # approved is not live: nothing serves it yet (@champion is exactly the live version)
    assert champion(ml.uri) is None and graduation.current_stages(paths) == {1: graduation.APPROVED}

    # live traffic 2025-03-04..07 meets the criteria: learning -> shadow, a GRADUATION_READY alert
    result = check(world, "2025-03-07T12:00:00+00:00")
    checks = result.asset_materializations_for_node("graduation_status")[0].metadata["checks"].value
    assert graduation.current_stages(paths) == {1: graduation.SHADOW}, checks
    ready = AlertStore(paths).list(alert_type="GRADUATION_READY")
    assert len(ready) == 1 and ready.iloc[0]["model_version"] == 1
    # checks again: shadow is compared with live traffic (MLflow run), never promoted to live automatically
    check(world, "2025-03-07T18:00:00+00:00")
    assert graduation.current_stages(paths) == {1: graduation.SHADOW}
    assert len(AlertStore(paths).list(alert_type="GRADUATION_READY")) == 1  # dedup
    with registry.tracking(ml.uri):
        runs = mlflow.search_runs(experiment_names=[graduation.SHADOW_EXPERIMENT])
    assert len(runs) >= 1 and "metrics.agreement_rate" in runs.columns
    assert 0 < runs["metrics.agreement_rate"].iloc[0] < 1

    # shadow -> live only by a person: the job with config records who and why
    assert (
        main(
            [
                "graduation",
                "approve",
                "1",
                "--by",
                "bob",
                "--data-dir",
                str(paths.root),
                "--tracking-uri",
                ml.uri,
            ]
        )
        == 2
    )  # a reason is required
    result = graduation_approval_job.execute_in_process(
        run_config={
            "ops": {"approve_for_live": {"config": {"version": 1, "by": "bob", "reason": "shadow agrees"}}}
        },
        resources={"lake": lake, "mlflow": ml},
    )
    assert result.success and graduation.current_stages(paths) == {1: graduation.LIVE}
    with registry.tracking(ml.uri) as client:
        assert str(client.get_registered_model(registry.REGISTERED_MODEL).aliases["live"]) == "1"
    assert champion(ml.uri) == 1

    # the best agents change on 2025-03-08: the live version's success falls (0.78 -> 0.64 on the last day)
    # below the demotion floor (0.7 * (1 - 0.05)); it is demoted, with a CRITICAL alert
    check(world, "2025-03-10T23:00:00+00:00", graduation_min_success_rate=0.7, graduation_demotion_drop=0.05)
    assert graduation.current_stages(paths) == {1: graduation.RETIRED}
    events = graduation.read_graduation_events(paths)
    assert events[["from_stage", "to_stage"]].fillna("").values.tolist() == [
        ["candidate", "approved"],
        ["approved", "shadow"],
        ["shadow", "live"],
        ["live", "retired"],
    ]
    assert events["triggered_by"].tolist()[0] == "alice" and events["triggered_by"].tolist()[2] == "bob"
    assert events["triggered_by"].iloc[3].startswith("graduation_status (run ")
    demoted = AlertStore(paths).list(alert_type="PERFORMANCE_DEGRADATION")
    assert "CRITICAL" in demoted["severity"].tolist()
    with registry.tracking(ml.uri) as client:
        aliases = client.get_registered_model(registry.REGISTERED_MODEL).aliases
        assert "live" not in aliases and "champion" not in aliases  # no earlier live version to return to
    assert main(["graduation", "status", "--data-dir", str(paths.root), "--tracking-uri", ml.uri]) == 0
    assert "live" in capsys.readouterr().out


def test_auto_approval_thresholds():
    row = {"metrics": '{"candidate_score": 0.7, "samples": 500}', "improvement": 0.05}
    on = graduation.ApprovalThresholds(enabled=True)
    assert graduation.approval_check(row, on)[0]
    low = {"metrics": '{"candidate_score": 0.7, "samples": 50}', "improvement": 0.01}
    ok, failures, _ = graduation.approval_check(low, on)
    assert not ok and any("samples" in f for f in failures) and any("improvement" in f for f in failures)
