"""Daily partitions by event time (UTC), including today so fresh events land without waiting a day.

The first partition follows the data: `$LEARNING_PIPELINE_START_DATE` when set, else the date in
`$LEARNING_PIPELINE_DATA_DIR/first_partition_date` (written by `learning-pipeline demo` with its first
simulated day), else 2025-01-01. Events dated before the first partition are quarantined with reason
`before_first_partition`.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import dagster as dg

from learning_pipeline.lib.storage.lake import DATA_DIR_ENV

START_DATE_ENV = "LEARNING_PIPELINE_START_DATE"
START_DATE_FILE = "first_partition_date"  # in the data directory: one line, YYYY-MM-DD
DEFAULT_START_DATE = "2025-01-01"


def start_date_file(data_dir: str | os.PathLike) -> Path:
    """Where the first partition's date is kept for a data directory."""
    return Path(data_dir).expanduser().resolve() / START_DATE_FILE


def read_start_date(data_dir: str | os.PathLike | None = None) -> str:
    """The first partition: the environment variable, else the data directory's file, else the default.

    data_dir defaults to `$LEARNING_PIPELINE_DATA_DIR` (set by `make ui`, the demo and deployments); without
    it no file is read, so a `data/` left in the working directory never moves the partitions of other runs.
    """
    from_env = os.environ.get(START_DATE_ENV, "").strip()
    if from_env:
        source, value = START_DATE_ENV, from_env
    else:
        data_dir = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
        path = start_date_file(data_dir) if data_dir else None
        if path is None or not path.is_file():
            return DEFAULT_START_DATE
        source, value = str(path), path.read_text(encoding="utf-8").strip()
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValueError(f"the first partition date in {source} must be YYYY-MM-DD, got {value!r}") from None


def write_start_date(data_dir: str | os.PathLike, first_day: str) -> Path:
    """Record the first partition of a data directory; definitions loaded afterwards start there."""
    path = start_date_file(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(date.fromisoformat(first_day).isoformat() + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


PARTITION_START_DATE = read_start_date()

daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITION_START_DATE, timezone="UTC", end_offset=1)


# For assets built from all days: run after any parent updates. Plain eager() also waits while any parent
# partition is missing, and a daily parent always has days without data, so that clause is dropped.
follows_new_data = dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())


# What a job selects by: assets built from one day (daily partitions) and assets built from all days.
GRAIN_TAG = "learning_pipeline/grain"
ONE_DAY = {GRAIN_TAG: "day"}
ALL_DAYS = {GRAIN_TAG: "all_days"}
