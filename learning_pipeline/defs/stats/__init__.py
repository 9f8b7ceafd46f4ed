"""Agent statistics: daily aggregates (partitioned, incremental) and windowed marts, run from dbt_like_sql."""
