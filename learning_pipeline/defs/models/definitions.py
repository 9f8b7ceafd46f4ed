"""Definitions of the models domain. Resources are bound by learning_pipeline.definitions:
`lake` (LakeResource) and `mlflow` (MlflowResource, see resources.default_mlflow_resource)."""

import dagster as dg

from learning_pipeline.defs.models.assets import (
    candidate_policy,
    model_versions,
    model_versions_match_registry,
    policy_evaluation,
    rollback_job,
)

learning_cycle_job = dg.define_asset_job(
    "learning_cycle_job",
    selection=dg.AssetSelection.groups("models"),
    description="Train a candidate routing policy up to a day, evaluate it offline, gate it and register it.",
)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        assets=[candidate_policy, policy_evaluation, model_versions],
        asset_checks=[model_versions_match_registry],
        jobs=[learning_cycle_job, rollback_job],
    )
