"""Training data assets: sft_pairs (daily JSONL exports), routing_pairs and agent_config_recommendations."""

import dataclasses
import typing

import dagster as dg

from learning_pipeline.defs.metadata import markdown_table
from learning_pipeline.defs.partitions import ALL_DAYS, ONE_DAY, daily_partitions, follows_new_data
from learning_pipeline.defs.resources import LakeResource
from learning_pipeline.lib.learning.data import reward_vars
from learning_pipeline.lib.training.agent_configs import ConfigRules, agent_configs_dir
from learning_pipeline.lib.training.training_data import (
    DEFAULT_SYSTEM_PROMPT,
    build_agent_config_recommendations,
    build_routing_pairs,
    build_sft_pairs,
)

GROUP = "training"
OUTCOME_EVENTS = dg.AssetKey("outcome_events")
# Assets over all days: re-materialized when outcome_events gets new data.
ALL_DAYS_ASSET = dict(
    deps=[OUTCOME_EVENTS], group_name=GROUP, tags=ALL_DAYS, automation_condition=follows_new_data
)


class SftPairsConfig(dg.Config):
    min_quality: float = 0.7
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    dedup_across_partitions: bool = True


@dg.asset(
    partitions_def=daily_partitions,
    deps=[OUTCOME_EVENTS],
    kinds={"duckdb", "jsonl", "parquet"},
    group_name=GROUP,
    tags=ONE_DAY,
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "Supervised fine-tuning pairs of the day: successful events with quality >= min_quality and both "
        "input and output, PII redacted, de-duplicated on (input, output) within the day and against earlier "
        "days; exported as OpenAI chat JSONL under exports/sft/event_date=D/ and as Parquet in the lake."
    ),
)
def sft_pairs(
    context: dg.AssetExecutionContext, config: SftPairsConfig, lake: LakeResource
) -> dg.MaterializeResult:
    result = build_sft_pairs(
        lake.paths,
        context.partition_key,
        min_quality=config.min_quality,
        system_prompt=config.system_prompt,
        dedup_across_partitions=config.dedup_across_partitions,
    )
    metadata: dict = {f"{k}": v for k, v in result.counts.items()}
    metadata.update({f"redacted_{t}": n for t, n in result.redactions.items()})
    metadata.update(
        {
            "dagster/row_count": result.exported,
            "min_quality": config.min_quality,
            "jsonl_path": dg.MetadataValue.path(str(result.jsonl_path)),
            "parquet_path": dg.MetadataValue.path(str(result.parquet_path)),
            "preview": markdown_table(result.preview, limit=20, text_width=80),
        }
    )
    return dg.MaterializeResult(metadata=metadata)


class RoutingPairsConfig(dg.Config):
    min_samples: int = 20
    # the reward candidates are ranked by (dbt_like_sql/macros/reward.sql): base rule and penalty weights per
    # task type, {"*": {"cost": per USD, "latency": per second}, "<task type>": {...}}; {}: no penalties
    reward_rule: str = "graded"
    reward_weights: dict[str, dict[str, float]] = {}


@dg.asset(
    **ALL_DAYS_ASSET,
    kinds={"duckdb", "parquet"},
    description=(
        "Per task class (task_type, context complexity or '*') every (agent, model) candidate with executions, "
        "success rate, quality, latency p50 and cost, ranked; the best is the top eligible candidate "
        "(at least min_samples executions) by mean reward, then success rate and quality. Table "
        "lake/routing_pairs."
    ),
)
def routing_pairs(config: RoutingPairsConfig, lake: LakeResource) -> dg.MaterializeResult:
    result = build_routing_pairs(
        lake.paths,
        min_samples=config.min_samples,
        reward=reward_vars(config.reward_rule, config.reward_weights),
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": result.table.num_rows,
            "task_classes": result.task_classes,
            "task_classes_with_best": result.classes_with_best,
            "min_samples": config.min_samples,
            "path": dg.MetadataValue.path(str(result.parquet_path)),
            "best_per_class": markdown_table(result.best, limit=50, text_width=80),
        }
    )


# The run config of agent_config_recommendations: the fields of lib's ConfigRules, with its defaults.
AgentConfigRecommendationsConfig = type(
    "AgentConfigRecommendationsConfig",
    (dg.Config,),
    {
        "__module__": __name__,
        "__annotations__": typing.get_type_hints(ConfigRules),
        **dataclasses.asdict(ConfigRules()),
    },
)


@dg.asset(
    **ALL_DAYS_ASSET,
    kinds={"duckdb", "toml"},
    description=(
        "Per agent a recommended TOML config (tools, max_turns, preferred task types) under agent_configs/, "
        "with every version kept in agent_configs/history/ so an earlier one can be restored."
    ),
)
def agent_config_recommendations(
    config: AgentConfigRecommendationsConfig, lake: LakeResource
) -> dg.MaterializeResult:
    rules = ConfigRules(**config.model_dump())
    result = build_agent_config_recommendations(lake.paths, rules)
    rows = [
        {
            "agent": rec["agent"]["name"],
            "tools": ", ".join(rec["agent"]["tools"]),
            "max_turns": rec["agent"]["max_turns"],
            "preferred_task_types": ", ".join(rec["agent"]["preferred_task_types"]),
            "success_rate": round(rec["evidence"]["success_rate"], 4),
        }
        for rec in result.recommendations
    ]
    return dg.MaterializeResult(
        metadata={
            "agents": len(result.recommendations),
            "new_versions": len(result.written),
            "unchanged": len(result.unchanged),
            "written": markdown_table(
                [{"agent": v.agent, "version": v.version, "file": v.path.name} for v in result.written],
                limit=20,
                text_width=80,
            ),
            "recommendations": markdown_table(rows, limit=50, text_width=80),
            "config_dir": dg.MetadataValue.path(str(agent_configs_dir(lake.paths))),
        }
    )
