import dagster as dg

from learning_pipeline.defs.training.assets import agent_config_recommendations, routing_pairs, sft_pairs
from learning_pipeline.defs.training.checks import training_checks


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        assets=[sft_pairs, routing_pairs, agent_config_recommendations], asset_checks=training_checks
    )
