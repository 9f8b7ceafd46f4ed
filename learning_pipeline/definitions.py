"""The one Definitions object of the code location: every domain's definitions, jobs and shared resources."""

import dagster as dg

from learning_pipeline.defs.autonomy.definitions import defs as autonomy_defs
from learning_pipeline.defs.autonomy.resources import default_autonomy_resource
from learning_pipeline.defs.bandit.definitions import defs as bandit_defs
from learning_pipeline.defs.events.definitions import defs as events_defs
from learning_pipeline.defs.ingest.definitions import defs as ingest_defs
from learning_pipeline.defs.ingest.resources import default_kafka_resource
from learning_pipeline.defs.models.definitions import defs as models_defs
from learning_pipeline.defs.models.resources import default_mlflow_resource
from learning_pipeline.defs.partitions import daily_partitions
from learning_pipeline.defs.resources import default_lake_resource
from learning_pipeline.defs.stats.definitions import defs as stats_defs
from learning_pipeline.defs.training.definitions import defs as training_defs

domain_defs = dg.Definitions.merge(events_defs, ingest_defs, stats_defs, bandit_defs, training_defs, models_defs)


def _specs(domain: dg.Definitions) -> list[dg.AssetSpec]:
    return [spec for assets in domain.assets for spec in assets.specs]


MODEL_ASSET_KEYS = [spec.key for spec in _specs(models_defs)]
DAILY_ASSET_KEYS = [
    spec.key for spec in _specs(domain_defs)
    if spec.partitions_def == daily_partitions and spec.key not in MODEL_ASSET_KEYS
]
LEARNING_ASSET_KEYS = [spec.key for spec in _specs(domain_defs) if spec.partitions_def is None]

daily_job = dg.define_asset_job(
    "daily_job",
    selection=dg.AssetSelection.assets(*DAILY_ASSET_KEYS),
    description="One UTC day: validate landed events, then every daily-partitioned asset built from them.",
)
learning_job = dg.define_asset_job(
    "learning_job",
    selection=dg.AssetSelection.assets(*LEARNING_ASSET_KEYS),
    description="Everything learned from all days: stats, posteriors, recommendations, routing, configs.",
)
learning_cycle_job = dg.define_asset_job(
    "learning_cycle_job",
    selection=dg.AssetSelection.assets(*MODEL_ASSET_KEYS),
    description="Train a candidate routing policy up to a day, evaluate it offline, gate it and register it.",
)
daily_schedule = dg.build_schedule_from_partitioned_job(
    daily_job,
    hour_of_day=0,
    minute_of_hour=15,
    description="Re-materializes the day that just ended, so late events of yesterday are included.",
)

defs = dg.Definitions.merge(
    domain_defs,
    autonomy_defs,
    dg.Definitions(
        jobs=[daily_job, learning_job, learning_cycle_job],
        schedules=[daily_schedule],
        resources={
            "lake": default_lake_resource(),
            "kafka": default_kafka_resource(),
            "mlflow": default_mlflow_resource(),
            "autonomy": default_autonomy_resource(),
        },
    ),
)
