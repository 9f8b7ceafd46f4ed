"""Asset checks of the training data assets (logic in lib/training_data.py)."""

import dagster as dg

from learning_pipeline.defs.resources import LakeResource
from learning_pipeline.defs.training.assets import agent_config_recommendations, routing_pairs, sft_pairs
from learning_pipeline.lib.training import training_data as td


def _result(outcome: td.CheckOutcome, severity=dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckResult:
    metadata = {
        k: (v if isinstance(v, (int, float, str)) else dg.MetadataValue.json(v))
        for k, v in outcome.details.items()
    }
    return dg.AssetCheckResult(passed=outcome.passed, severity=severity, metadata=metadata)


@dg.asset_check(
    asset=sft_pairs,
    blocking=True,
    description="event_id not null and unique; pairs unique within a day; texts present",
)
def sft_pairs_keys_unique(lake: LakeResource) -> dg.AssetCheckResult:
    return _result(td.check_sft_keys(lake.paths))


@dg.asset_check(
    asset=sft_pairs,
    description="pairs <= successful events per day, all from successful events; JSONL lines = Parquet rows",
)
def sft_pairs_consistent_with_events(lake: LakeResource) -> dg.AssetCheckResult:
    return _result(td.check_sft_consistent_with_events(lake.paths))


@dg.asset_check(asset=sft_pairs, description="re-running the redaction over exported texts finds no PII")
def sft_pairs_no_pii_left(lake: LakeResource) -> dg.AssetCheckResult:
    return _result(td.check_sft_no_pii_left(lake.paths))


@dg.asset_check(
    asset=sft_pairs, description="no pair exported on two dates (warns after out-of-order backfills)"
)
def sft_pairs_unique_across_days(lake: LakeResource) -> dg.AssetCheckResult:
    return _result(td.check_sft_unique_across_partitions(lake.paths), severity=dg.AssetCheckSeverity.WARN)


@dg.asset_check(
    asset=routing_pairs,
    blocking=True,
    description="keys not null/unique, rates in [0,1], one best per class, executions match events",
)
def routing_pairs_valid(lake: LakeResource) -> dg.AssetCheckResult:
    return _result(td.check_routing_pairs(lake.paths))


@dg.asset_check(
    asset=agent_config_recommendations,
    description="every agent has a current, parseable, versioned config with max_turns >= 1",
)
def agent_configs_complete(lake: LakeResource) -> dg.AssetCheckResult:
    return _result(td.check_agent_configs(lake.paths))


training_checks = [
    sft_pairs_keys_unique,
    sft_pairs_consistent_with_events,
    sft_pairs_no_pii_left,
    sft_pairs_unique_across_days,
    routing_pairs_valid,
    agent_configs_complete,
]
