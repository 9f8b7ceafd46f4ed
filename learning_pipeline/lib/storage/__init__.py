"""The lake: directory layout, atomic Parquet writes, DuckDB views over it, the dbt-like SQL runner."""
