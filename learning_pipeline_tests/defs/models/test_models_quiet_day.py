"""A learning cycle on a day without events is a quiet day: it ends with a clear skip, registers nothing,
records why in learning_events, and the run succeeds (so no failure alert is raised)."""

import dagster as dg
import pytest

from learning_pipeline.defs.models.assets import (
    candidate_policy,
    model_versions,
    model_versions_match_registry,
    policy_evaluation,
)
from learning_pipeline.lib.learning import registry
from learning_pipeline.lib.learning.cycle import CycleConfig, run_cycle
from learning_pipeline.lib.storage.warehouse import lake_connection
from learning_pipeline_tests._models_fixtures import models_lake

ASSETS = [candidate_policy, policy_evaluation, model_versions, model_versions_match_registry]
QUIET_DAY = "2025-03-08"  # the simulated events end on 2025-03-06; 2025-03-07 and 03-08 have none
REASON = f"no held-out events on {QUIET_DAY}: nothing to evaluate"


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    paths, resources, _ = models_lake(
        tmp_path_factory.mktemp("quiet") / "data", days=6, events_per_day=300, seed=2, end_date="2025-03-06"
    )
    return paths, resources


def _learning_events(paths):
    with lake_connection(paths) as con:
        return con.execute(
            "SELECT event_type, reason, partition_key, model_version_id, dagster_run_id FROM learning_events"
        ).df()


def test_a_cycle_on_a_day_without_events_is_skipped_not_failed(lake):
    paths, resources = lake
    result = dg.materialize(
        ASSETS,
        partition_key=QUIET_DAY,
        resources=resources,
        run_config={"ops": {"candidate_policy": {"config": {"window_days": 5}}}},
    )
    assert result.success  # a failed learning run is what raises the CRITICAL alert
    for node in ("candidate_policy", "policy_evaluation"):
        meta = result.asset_materializations_for_node(node)[0].metadata
        assert meta["skipped"].value is True and meta["reason"].value == REASON
        assert meta["registered"].value is False
    by_key = {
        m.asset_key.to_user_string(): m.metadata
        for m in result.asset_materializations_for_node("model_versions")
    }
    assert by_key["model_versions"]["reason"].value == REASON
    assert by_key["learning_events"]["event_type"].value == "cycle_skipped"
    assert registry.model_versions_frame(resources["mlflow"].uri).empty  # no version registered
    assert all(check.passed for check in result.get_asset_check_evaluations())
    events = _learning_events(paths)
    assert events["event_type"].tolist() == ["cycle_skipped"]
    row = events.iloc[0]
    assert row["reason"] == REASON and row["partition_key"] == QUIET_DAY
    assert row["model_version_id"] is None and row["dagster_run_id"] == result.run_id


def test_run_cycle_skips_a_quiet_day_too(lake, tmp_path):
    paths, _ = lake
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cycle(paths, "2025-03-07", CycleConfig(window_days=5, contextual_model=False), uri)
    assert result.skipped == "no held-out events on 2025-03-07: nothing to evaluate"
    assert result.registered is None and result.evaluation is None
    assert registry.model_versions_frame(uri).empty
    events = _learning_events(paths)
    assert (events["partition_key"] == "2025-03-07").sum() == 1
