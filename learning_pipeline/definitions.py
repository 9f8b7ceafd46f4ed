"""The code location: every domain's lazy Definitions under `defs/`, plus the resources they share."""

from pathlib import Path

import dagster as dg

import learning_pipeline.defs
from learning_pipeline.defs.autonomy.resources import default_autonomy_resource
from learning_pipeline.defs.ingest.resources import default_kafka_resource
from learning_pipeline.defs.models.resources import default_mlflow_resource
from learning_pipeline.defs.resources import default_lake_resource


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        dg.load_defs(learning_pipeline.defs, project_root=Path(learning_pipeline.defs.__file__).parents[2]),
        dg.Definitions(
            resources={
                "lake": default_lake_resource(),
                "kafka": default_kafka_resource(),
                "mlflow": default_mlflow_resource(),
                "autonomy": default_autonomy_resource(),
            }
        ),
    )
