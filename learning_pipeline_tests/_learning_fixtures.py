"""Shared helpers for the stats/bandit tests: synthetic events on an in-memory DuckDB connection."""

import duckdb
import pyarrow as pa

from learning_pipeline.lib.storage.sql_runner import SqlProject


def events_connection(table: pa.Table) -> duckdb.DuckDBPyConnection:
    """`outcome_events` as the lake view would present it (with the Hive event_date column)."""
    con = duckdb.connect()
    con.register("raw_events", table)
    con.execute(
        "CREATE VIEW outcome_events AS SELECT *, CAST(timezone('UTC', \"timestamp\") AS DATE) AS event_date "
        "FROM raw_events"
    )
    return con


def daily_stats(table: pa.Table, **vars):
    con = events_connection(table)
    SqlProject.load().run(con, select=["agent_daily_stats"], vars=vars)
    return con.sql("SELECT * FROM agent_daily_stats").to_arrow_table().to_pandas()
