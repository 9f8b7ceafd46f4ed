"""Automation: after a landing run, the window stats and training tables follow through their conditions."""

import dagster as dg

from learning_pipeline.definitions import defs as code_location
from learning_pipeline.lib.storage.lake import land_records

defs = code_location()


def _assets(*keys):
    wanted = {dg.AssetKey(k) for k in keys}
    return [a for a in defs.assets if isinstance(a, dg.AssetsDefinition) and set(a.keys) & wanted]


def test_window_stats_follow_a_landing_run(lake):
    events = [
        {
            "event_id": f"e{i}",
            "agent_name": f"agent_{i % 3}",
            "task_type": "analysis",
            "status": "success",
            "timestamp": f"2025-10-09T1{i % 10}:00:00Z",
        }
        for i in range(30)
    ]
    land_records(lake.paths.landing, events)
    followers = {"agent_stats", "agent_task_stats", "routing_pairs", "agent_config_recommendations"}
    assets = _assets(
        "outcome_events", "agent_daily_stats", "agent_posteriors", "agent_recommendations", *followers
    )
    automation_defs = dg.Definitions(assets=assets, resources={"lake": lake})
    with dg.instance_for_test() as instance:
        # the sensor's first tick only records where things stand
        first = dg.evaluate_automation_conditions(defs=automation_defs, instance=instance)
        landing = dg.materialize(
            _assets("outcome_events", "agent_daily_stats"),
            partition_key="2025-10-09",
            instance=instance,
            resources={"lake": lake},
        )
        assert landing.success
        result = dg.evaluate_automation_conditions(
            defs=automation_defs, instance=instance, cursor=first.cursor
        )
        requested = {
            key for key in followers | {"outcome_events"} if result.get_num_requested(dg.AssetKey(key))
        }
        assert followers <= requested, requested
        assert "outcome_events" not in requested  # landing data is only ever ingested by runs for its files
