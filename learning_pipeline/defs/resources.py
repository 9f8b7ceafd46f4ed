"""Resources shared by every domain."""

from __future__ import annotations

import os

import dagster as dg

from learning_pipeline.lib.lake import LakePaths

DATA_DIR_ENV = "LEARNING_PIPELINE_DATA_DIR"
DEFAULT_DATA_DIR = "data"

# Assets that write the DuckDB warehouse file run in this pool; dagster.yaml limits it to one at a time.
WAREHOUSE_POOL = "duckdb_warehouse"


class LakeResource(dg.ConfigurableResource):
    """The data directory holding the landing zone, staging, the Parquet lake and the DuckDB warehouse."""

    data_dir: str = DEFAULT_DATA_DIR

    @property
    def paths(self) -> LakePaths:
        return LakePaths.at(self.data_dir).ensure()


def default_lake_resource() -> LakeResource:
    if DATA_DIR_ENV in os.environ:
        return LakeResource(data_dir=dg.EnvVar(DATA_DIR_ENV))
    return LakeResource()
