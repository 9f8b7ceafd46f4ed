"""Definitions of the autonomy domain. Resources bound by learning_pipeline.definitions: `lake`, `mlflow` and
`autonomy` (AutonomyResource, see resources.default_autonomy_resource)."""

import dagster as dg

from learning_pipeline.defs.autonomy.assets import (
    agent_alerts,
    autonomy_job,
    candidate_approval_job,
    graduation_approval_job,
    graduation_status,
    model_approvals,
)
from learning_pipeline.defs.autonomy.sensors import (
    after_learning_cycle_sensor,
    continuous_learning_sensor,
    graduation_schedule,
    learning_cycle_schedule,
    learning_schedule,
    run_failure_alert_sensor,
)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        assets=[model_approvals, graduation_status, agent_alerts],
        jobs=[autonomy_job, graduation_approval_job, candidate_approval_job],
        schedules=[learning_cycle_schedule, learning_schedule, graduation_schedule],
        sensors=[continuous_learning_sensor, after_learning_cycle_sensor, run_failure_alert_sensor],
    )
