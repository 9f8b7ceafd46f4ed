"""Definitions of the summary domain: learning_summary, the asset a person opens first, and its job.
Resources are bound by learning_pipeline.definitions: `lake`, `mlflow`, `autonomy`."""

import dagster as dg

from learning_pipeline.defs.summary.assets import learning_summary, summary_job


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=[learning_summary], jobs=[summary_job])
