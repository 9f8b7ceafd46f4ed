import dagster as dg

from learning_pipeline.defs.bandit.assets import agent_posteriors, agent_recommendations
from learning_pipeline.defs.bandit.checks import BANDIT_CHECKS


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=[agent_posteriors, agent_recommendations], asset_checks=BANDIT_CHECKS)
