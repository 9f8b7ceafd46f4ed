"""DuckDB over the Parquet lake: views for every lake table, in memory or in the warehouse file."""

from __future__ import annotations

import fcntl
import time
from pathlib import Path

import duckdb

from learning_pipeline.lib.storage.lake import LakePaths


def sql_literal(value: str) -> str:
    """Quote a string as a SQL literal (paths and names are data, never SQL)."""
    return "'" + str(value).replace("'", "''") + "'"


def quote_identifier(name: str) -> str:
    """Quote a name as a SQL identifier."""
    return '"' + str(name).replace('"', '""') + '"'


def table_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Names of the tables and views `con` can query (the lake views among them)."""
    return {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}


def lake_tables(paths: LakePaths) -> list[str]:
    """Lake tables that have at least one Parquet file."""
    if not paths.lake.exists():
        return []
    return sorted(p.name for p in paths.lake.iterdir() if p.is_dir() and any(p.rglob("*.parquet")))


def view_sql(paths: LakePaths, table: str) -> str:
    table_dir = paths.table(table)
    partitioned = any(child.name.startswith("event_date=") for child in table_dir.iterdir())
    pattern = table_dir / ("*/*.parquet" if partitioned else "*.parquet")
    return (
        f'CREATE OR REPLACE VIEW "{table}" AS SELECT * FROM read_parquet({sql_literal(str(pattern))}, '
        f"hive_partitioning = {str(partitioned).lower()}, union_by_name = true)"
    )


def attach_lake_views(con: duckdb.DuckDBPyConnection, paths: LakePaths) -> list[str]:
    """Create (or refresh) one view per lake table on `con`; returns the table names."""
    tables = lake_tables(paths)
    for table in tables:
        con.execute(view_sql(paths, table))
    return tables


def lake_connection(paths: LakePaths) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with views over the lake: no file lock, safe beside running writers."""
    con = duckdb.connect()
    attach_lake_views(con, paths)
    return con


def refresh_warehouse_views(paths: LakePaths, lock_timeout_seconds: float = 60.0) -> list[str]:
    """Write the lake views into the warehouse file so `duckdb data/warehouse.duckdb` can query them.

    Writers take turns under a file lock (a second process opening the file while the first creates it would
    find a half-written database); a process outside the pipeline holding the file, such as an open `duckdb`
    shell, is waited for up to lock_timeout_seconds.
    """
    Path(paths.warehouse).parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + lock_timeout_seconds
    with open(Path(paths.warehouse).with_name(".warehouse.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            while True:
                try:
                    with duckdb.connect(str(paths.warehouse)) as con:
                        return attach_lake_views(con, paths)
                except duckdb.IOException as error:
                    if "lock" not in str(error).lower() or time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
