"""Resources shared by every domain."""

from __future__ import annotations

import os
from datetime import date, timedelta

import dagster as dg

from learning_pipeline.defs.partitions import PARTITION_START_DATE
from learning_pipeline.lib.events.staging import (
    DEFAULT_DEDUP_WINDOW_DAYS,
    DEFAULT_MAX_RECORD_BYTES,
    StagingRules,
)
from learning_pipeline.lib.storage.lake import DATA_DIR_ENV, LakePaths

DEFAULT_DATA_DIR = "data"

# Assets that write the DuckDB warehouse file run in this pool; dagster.yaml limits it to one at a time.
WAREHOUSE_POOL = "duckdb_warehouse"


class LakeResource(dg.ConfigurableResource):
    """The data directory holding the landing zone, staging, the Parquet lake and the DuckDB warehouse."""

    data_dir: str = DEFAULT_DATA_DIR
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    max_future_skew_seconds: int = 3600
    # The same event_id on another day at most this many days away is a duplicate (0: per day only).
    dedup_window_days: int = DEFAULT_DEDUP_WINDOW_DAYS
    # Crash debris (temporary and uncommitted files) older than this is removed by the ingest step.
    debris_grace_seconds: int = 3600

    @property
    def paths(self) -> LakePaths:
        return LakePaths.at(self.data_dir).ensure()

    def staging_rules(self) -> StagingRules:
        return StagingRules(
            first_date=date.fromisoformat(PARTITION_START_DATE),
            max_record_bytes=self.max_record_bytes,
            max_future_skew=timedelta(seconds=self.max_future_skew_seconds),
            dedup_window_days=self.dedup_window_days,
        )


def default_lake_resource() -> LakeResource:
    if DATA_DIR_ENV in os.environ:
        return LakeResource(data_dir=dg.EnvVar(DATA_DIR_ENV))
    return LakeResource()
