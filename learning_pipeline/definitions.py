"""The one Definitions object of the code location: every domain's definitions, jobs and shared resources."""

import dagster as dg

from learning_pipeline.defs.bandit.definitions import defs as bandit_defs
from learning_pipeline.defs.events.definitions import defs as events_defs
from learning_pipeline.defs.partitions import daily_partitions
from learning_pipeline.defs.resources import default_lake_resource
from learning_pipeline.defs.stats.definitions import defs as stats_defs
from learning_pipeline.defs.training.definitions import defs as training_defs

domain_defs = dg.Definitions.merge(events_defs, stats_defs, bandit_defs, training_defs)

_specs = [spec for assets in domain_defs.assets for spec in assets.specs]
DAILY_ASSET_KEYS = [spec.key for spec in _specs if spec.partitions_def == daily_partitions]
LEARNING_ASSET_KEYS = [spec.key for spec in _specs if spec.partitions_def is None]

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
daily_schedule = dg.build_schedule_from_partitioned_job(
    daily_job,
    hour_of_day=0,
    minute_of_hour=15,
    description="Re-materializes the day that just ended, so late events of yesterday are included.",
)

defs = dg.Definitions.merge(
    domain_defs,
    dg.Definitions(
        jobs=[daily_job, learning_job],
        schedules=[daily_schedule],
        resources={"lake": default_lake_resource()},
    ),
)
