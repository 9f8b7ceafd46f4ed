"""Materialize the stats and bandit assets on fixture Parquet events and run their checks."""

import dagster as dg
import pytest

from learning_pipeline.defs.bandit.definitions import defs as bandit_location
from learning_pipeline.defs.resources import LakeResource
from learning_pipeline.defs.stats.definitions import defs as stats_location
from learning_pipeline.lib.bandit.thompson import POSTERIOR_COLUMNS
from learning_pipeline.lib.simulation import SimulationConfig, write_lake
from learning_pipeline.lib.storage.lake import LakePaths
from learning_pipeline.lib.storage.warehouse import lake_connection

DAYS = ["2025-02-26", "2025-02-27", "2025-02-28"]


@pytest.fixture(scope="module")
def lake_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("lake")
    LakePaths.at(root).ensure()
    config = SimulationConfig(
        days=3,
        events_per_day=1000,
        seed=4,
        truth_seed=3,
        end_date=DAYS[-1],
        agents=3,
        task_types=4,
        missing_task_type_share=0.02,
        missing_quality_share=0.05,
    )
    write_lake(config, root)
    return root


def _assets_and_checks():
    stats_defs, bandit_defs = stats_location(), bandit_location()
    assets = list(stats_defs.assets) + list(bandit_defs.assets)
    checks = list(stats_defs.asset_checks) + list(bandit_defs.asset_checks)
    return assets, checks


def test_materialize_stats_and_bandit(lake_dir):
    assets, checks = _assets_and_checks()
    resources = {"lake": LakeResource(data_dir=str(lake_dir))}
    daily = [a for a in assets if dg.AssetKey("agent_daily_stats") in a.keys][0]
    for day in DAYS:
        result = dg.materialize(
            [daily], partition_key=day, resources=resources, selection=[dg.AssetKey("agent_daily_stats")]
        )
        assert result.success
    others = [a for a in assets if a is not daily]
    result = dg.materialize(others + checks, resources=resources)
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert evaluations, "checks ran"
    failed = {(e.asset_key.to_user_string(), e.check_name): e.metadata for e in evaluations if not e.passed}
    # Freshness is a warning about the fixture's 2025 dates, the rest must pass.
    assert set(failed) <= {("agent_task_stats", "agent_task_stats_fresh")}, failed

    paths = LakePaths.at(lake_dir)
    con = lake_connection(paths)
    n_events = con.execute("SELECT count(*) FROM outcome_events").fetchone()[0]
    all_window = con.execute(
        "SELECT sum(executions) FROM agent_task_stats WHERE window_name = 'all' AND context_key = '*'"
    ).fetchone()[0]
    assert all_window == n_events == 3000
    post = con.execute("SELECT * FROM agent_posteriors").df()
    assert list(post.columns) == POSTERIOR_COLUMNS
    recs = con.execute("SELECT * FROM agent_recommendations").df()
    assert set(recs["rank"]) == {1, 2, 3}
    assert (paths.root / "plots" / "agent_posteriors.png").stat().st_size > 1000
    mat = result.asset_materializations_for_node("agent_posteriors")[0]
    assert "plot" in mat.metadata and "best_agent_per_task" in mat.metadata


def test_daily_partition_replaces_itself_and_checks_count(lake_dir):
    """Re-materializing a partition rewrites only that partition; counts still reconcile."""
    resources = {"lake": LakeResource(data_dir=str(lake_dir))}
    assets, checks = _assets_and_checks()
    daily = [a for a in assets if dg.AssetKey("agent_daily_stats") in a.keys][0]
    daily_checks = [
        c for c in checks if any(k.asset_key == dg.AssetKey("agent_daily_stats") for k in c.check_keys)
    ]
    result = dg.materialize([daily, *daily_checks], partition_key=DAYS[0], resources=resources)
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())


def test_stats_without_daily_aggregates_fail_clearly(tmp_path):
    assets, _ = _assets_and_checks()
    marts = [a for a in assets if dg.AssetKey("agent_stats") in a.keys][0]
    with pytest.raises(dg.Failure, match="agent_daily_stats"):
        dg.materialize([marts], resources={"lake": LakeResource(data_dir=str(tmp_path))})
