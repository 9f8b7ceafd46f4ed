import dagster as dg

from learning_pipeline.defs.decisions.assets import agent_decisions, decisions_job
from learning_pipeline.defs.decisions.sensors import decision_log_sensor


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=[agent_decisions], jobs=[decisions_job], sensors=[decision_log_sensor])
