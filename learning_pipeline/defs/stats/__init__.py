"""Agent statistics: daily aggregates (partitioned, incremental) and windowed marts, run from dbt_like_sql."""

from learning_pipeline.defs.stats.definitions import defs

__all__ = ["defs"]
