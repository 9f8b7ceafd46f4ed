"""Asset checks of the training data assets (the checks themselves are in lib/training/training_data.py)."""

import dagster as dg

from learning_pipeline.defs.checks import TableCheck, asset_checks
from learning_pipeline.defs.training.assets import agent_config_recommendations, routing_pairs, sft_pairs
from learning_pipeline.lib.training import training_data as td


def _outcome(check):
    """A lib check (paths -> CheckOutcome) as the measure of a declaration."""

    def measure(con, paths) -> tuple[bool, dict]:
        outcome = check(paths)
        return outcome.passed, outcome.details

    return measure


def _lib_check(name, asset, description, check, **options) -> TableCheck:
    return TableCheck(name, asset, description, measure=_outcome(check), connect=None, **options)


training_checks = asset_checks(
    _lib_check(
        "sft_pairs_keys_unique",
        sft_pairs,
        "event_id not null and unique; pairs unique within a day; texts present",
        td.check_sft_keys,
        blocking=True,
    ),
    _lib_check(
        "sft_pairs_consistent_with_events",
        sft_pairs,
        "pairs <= successful events per day, all from successful events; JSONL lines = Parquet rows",
        td.check_sft_consistent_with_events,
    ),
    _lib_check(
        "sft_pairs_no_pii_left",
        sft_pairs,
        "re-running the redaction over exported texts finds no PII",
        td.check_sft_no_pii_left,
    ),
    _lib_check(
        "sft_pairs_unique_across_days",
        sft_pairs,
        "no pair exported on two dates (warns after out-of-order backfills)",
        td.check_sft_unique_across_partitions,
        severity=dg.AssetCheckSeverity.WARN,
    ),
    _lib_check(
        "routing_pairs_valid",
        routing_pairs,
        "keys not null/unique, rates in [0,1], one best per class, executions match events",
        td.check_routing_pairs,
        blocking=True,
    ),
    _lib_check(
        "agent_configs_complete",
        agent_config_recommendations,
        "every agent has a current, parseable, versioned config with max_turns >= 1",
        td.check_agent_configs,
    ),
)
