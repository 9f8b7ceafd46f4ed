import dagster as dg

from learning_pipeline.defs.stats.assets import agent_daily_stats, agent_stats_marts
from learning_pipeline.defs.stats.checks import STATS_CHECKS


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=[agent_daily_stats, agent_stats_marts], asset_checks=STATS_CHECKS)
