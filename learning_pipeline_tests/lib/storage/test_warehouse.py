"""table_names: the tables and lake views a connection can query."""

import pyarrow as pa

from learning_pipeline.lib.storage.lake import LakePaths, write_parquet_atomic
from learning_pipeline.lib.storage.warehouse import lake_connection, table_names


def test_table_names_lists_lake_views_and_tables(tmp_path):
    paths = LakePaths.at(tmp_path).ensure()
    with lake_connection(paths) as con:
        assert table_names(con) == set()
    write_parquet_atomic(
        paths.partition_dir("outcome_events", "2025-03-01") / "data.parquet", pa.table({"x": [1]})
    )
    write_parquet_atomic(paths.table("agent_posteriors") / "data.parquet", pa.table({"y": [2]}))
    with lake_connection(paths) as con:
        con.execute("CREATE TABLE scratch AS SELECT 1 AS z")
        assert table_names(con) == {"outcome_events", "agent_posteriors", "scratch"}
