"""agent_decisions: one UTC day of the decision log, validated and de-duplicated (quarantined_decisions: the rest)."""

import dagster as dg

from learning_pipeline.defs.partitions import ONE_DAY, daily_partitions
from learning_pipeline.defs.resources import LakeResource
from learning_pipeline.lib.events.decisions import (
    DECISION_QUARANTINE_TABLE,
    DECISIONS_TABLE,
    validate_day,
)
from learning_pipeline.lib.storage.lake import write_parquet_atomic

GROUP = "decisions"


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            DECISIONS_TABLE,
            description="Served and shadow decisions of one UTC day with the selection probability of every "
            "eligible agent; outcome events join them by decision_id for off-policy evaluation.",
            kinds={"duckdb", "parquet"},
            group_name=GROUP,
            tags=ONE_DAY,
        ),
        dg.AssetSpec(
            DECISION_QUARANTINE_TABLE,
            description="Decision rows that failed validation, with the reason.",
            kinds={"parquet"},
            group_name=GROUP,
            tags=ONE_DAY,
        ),
    ],
    partitions_def=daily_partitions,
    check_specs=[dg.AssetCheckSpec("decision_counts_balance", asset=DECISIONS_TABLE, blocking=True)],
)
def agent_decisions(context: dg.AssetExecutionContext, lake: LakeResource):
    day = context.partition_key
    paths = lake.paths
    result = validate_day(paths, day)
    write_parquet_atomic(paths.partition_dir(DECISIONS_TABLE, day) / "data.parquet", result.accepted)
    write_parquet_atomic(
        paths.partition_dir(DECISION_QUARANTINE_TABLE, day) / "data.parquet", result.quarantined
    )
    accepted, quarantined = result.accepted.num_rows, result.quarantined.num_rows
    served = int(result.accepted["served"].to_numpy(zero_copy_only=False).sum()) if accepted else 0
    yield dg.MaterializeResult(
        asset_key=DECISIONS_TABLE,
        metadata={
            "received": result.received,
            "accepted": accepted,
            "served": served,
            "shadow": accepted - served,
            "quarantined": quarantined,
            "duplicates": result.duplicates,
        },
    )
    yield dg.MaterializeResult(asset_key=DECISION_QUARANTINE_TABLE, metadata={"rows": quarantined})
    yield dg.AssetCheckResult(
        check_name="decision_counts_balance",
        asset_key=DECISIONS_TABLE,
        passed=result.received == accepted + quarantined + result.duplicates,
        metadata={"received": result.received, "accepted": accepted, "quarantined": quarantined},
    )


decisions_job = dg.define_asset_job(
    "decisions_job",
    selection=dg.AssetSelection.groups(GROUP),
    partitions_def=daily_partitions,
    description="Validate one UTC day of the decision log.",
)
