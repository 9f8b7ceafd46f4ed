"""Daily partitions by event time (UTC), including today so fresh events land without waiting a day."""

from __future__ import annotations

import os

import dagster as dg

START_DATE_ENV = "LEARNING_PIPELINE_START_DATE"
DEFAULT_START_DATE = "2025-01-01"

PARTITION_START_DATE = os.environ.get(START_DATE_ENV, DEFAULT_START_DATE)

daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITION_START_DATE, timezone="UTC", end_offset=1)


# For assets built from all days: run after any parent updates. Plain eager() also waits while any parent
# partition is missing, and a daily parent always has days without data, so that clause is dropped.
follows_new_data = dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())


# What a job selects by: assets built from one day (daily partitions) and assets built from all days.
GRAIN_TAG = "learning_pipeline/grain"
ONE_DAY = {GRAIN_TAG: "day"}
ALL_DAYS = {GRAIN_TAG: "all_days"}
