"""outcome_events and quarantined_events: one validated, de-duplicated Parquet partition per UTC day."""

import dataclasses
from datetime import timedelta

import dagster as dg
import duckdb
import pandas as pd
import pyarrow.parquet as pq

from learning_pipeline.defs.partitions import ONE_DAY, daily_partitions
from learning_pipeline.defs.resources import WAREHOUSE_POOL, LakeResource
from learning_pipeline.lib.events.janitor import sweep_debris
from learning_pipeline.lib.events.staging import log_snapshot, stage_pending
from learning_pipeline.lib.events.validation import validate_partition
from learning_pipeline.lib.storage.warehouse import refresh_warehouse_views, sql_literal

PARTITION_FILE = "data.parquet"
PREVIEW_COLUMNS = [
    "event_id",
    "agent_name",
    "task_type",
    "status",
    "timestamp",
    "latency_ms",
    "quality_score",
]


def _preview(path, columns: list[str], rows: int = 5) -> str:
    table = pq.read_table(path, columns=columns).slice(0, rows)
    return table.to_pandas().to_markdown(index=False) if table.num_rows else "(empty)"


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            key, description=description, kinds={"duckdb", "parquet"}, group_name="events", tags=ONE_DAY
        )
        for key, description in (
            (
                "outcome_events",
                "Validated, de-duplicated outcome events, one Parquet partition per UTC day (Hive layout).",
            ),
            (
                "quarantined_events",
                "Every rejected record of the day with its reason and the rules it broke.",
            ),
        )
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "event_ids_unique", asset="outcome_events", description="no event_id twice", blocking=True
        ),
    ],
    partitions_def=daily_partitions,
    pool=WAREHOUSE_POOL,
)
def outcome_events(context: dg.AssetExecutionContext, lake: LakeResource):
    """Sweep crash debris, stage new landing files, then validate and de-duplicate every staged record of
    this day (against the days within the de-duplication window).

    validate_partition refuses to publish a day whose counts do not reconcile
    (received = accepted + quarantined + duplicates), so the metadata always balances, and never replaces a
    partition built from a later staging-log position (the metadata then shows the published counts).
    """
    paths = lake.paths
    rules = lake.staging_rules()
    swept = sweep_debris(paths, timedelta(seconds=lake.debris_grace_seconds))
    newly_staged = stage_pending(paths, rules)
    unreadable = [entry for entry in newly_staged if entry.error]
    for entry in unreadable:
        context.log.warning(f"unreadable landing file {entry.landing_file}: {entry.error}")
    day = context.partition_key
    snapshot = log_snapshot(paths)
    staged = snapshot.files_for(paths, day)
    neighbors = snapshot.neighbor_files(paths, day, rules.dedup_window_days)
    accepted_path = paths.partition_dir("outcome_events", day) / PARTITION_FILE
    quarantine_path = paths.partition_dir("quarantined_events", day) / PARTITION_FILE
    with duckdb.connect() as con:
        counts = validate_partition(
            con,
            staged,
            rules,
            accepted_path,
            quarantine_path,
            neighbor_files=neighbors,
            staging_seq=snapshot.seq,
            staging_log=snapshot.log_id,
        )
        if not counts.published:
            context.log.warning(
                f"{day} was already published from staging-log position {counts.staging_seq}, later than "
                f"this run's {snapshot.seq}: left in place"
            )
        duplicate_ids = con.execute(
            f"SELECT count(*) - count(DISTINCT event_id) FROM read_parquet({sql_literal(str(accepted_path))})"
        ).fetchone()[0]
    refresh_warehouse_views(paths)

    reasons = pd.DataFrame(sorted(counts.by_reason.items()), columns=["reason", "records"])
    yield dg.MaterializeResult(
        asset_key="outcome_events",
        metadata={
            # every PartitionCounts number (received, accepted, ..., staging_seq, published); reasons below
            **{k: v for k, v in dataclasses.asdict(counts).items() if k != "by_reason"},
            "dagster/row_count": counts.accepted,
            "landing_files": len(staged),
            "newly_staged_files": len(newly_staged),
            "unreadable_files": dg.MetadataValue.json(
                [
                    {"landing_file": e.landing_file, "set_aside": e.set_aside, "error": e.error}
                    for e in unreadable
                ]
            ),
            "janitor_removed_files": len(swept.removed),
            "janitor_removed_bytes": swept.removed_bytes,
            "janitor_removed": dg.MetadataValue.json(swept.removed[:200]),
            "path": dg.MetadataValue.path(str(accepted_path)),
            "preview": dg.MetadataValue.md(_preview(accepted_path, PREVIEW_COLUMNS)),
        },
    )
    yield dg.MaterializeResult(
        asset_key="quarantined_events",
        metadata={
            "dagster/row_count": counts.quarantined,
            "by_reason": dg.MetadataValue.md(reasons.to_markdown(index=False) if len(reasons) else "(none)"),
            "path": dg.MetadataValue.path(str(quarantine_path)),
            "preview": dg.MetadataValue.md(_preview(quarantine_path, ["record_number", "reason", "details"])),
        },
    )
    yield dg.AssetCheckResult(
        asset_key="outcome_events",
        check_name="event_ids_unique",
        passed=duplicate_ids == 0,
        metadata={"repeated_event_ids": int(duplicate_ids)},
    )


ingest_job = dg.define_asset_job(
    "ingest_outcome_events",
    selection=dg.AssetSelection.assets("outcome_events", "quarantined_events"),
    description="Validate and de-duplicate the landed events of one day.",
)
