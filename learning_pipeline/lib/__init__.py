"""Pure logic with no Dagster import: schema, validation, learning math, SQL runner."""
