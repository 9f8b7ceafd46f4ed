"""A thin typed MLflow resource: where runs, models and the registry live."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from learning_pipeline.defs.lazy import lazy_module
from learning_pipeline.defs.resources import DATA_DIR_ENV, DEFAULT_DATA_DIR

registry = lazy_module("learning_pipeline.lib.learning.registry")

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


class MlflowResource(dg.ConfigurableResource):
    """MLflow tracking + registry.

    tracking_uri: e.g. `http://127.0.0.1:5000` (a tracking server backed by PostgreSQL) or a
    `sqlite:///...` URI; empty means `sqlite:///<data_dir>/mlflow.db` with artifacts under
    `<data_dir>/mlartifacts` (never a `./mlruns` file store).
    """

    tracking_uri: str = ""
    data_dir: str = DEFAULT_DATA_DIR

    @property
    def uri(self) -> str:
        return self.tracking_uri or registry.default_tracking_uri(self.data_dir)

    @property
    def artifact_location(self) -> str | None:
        """Artifact root for a new experiment; a tracking server decides its own (`--artifacts-destination`)."""
        if self.uri.startswith(("http://", "https://", "databricks")):
            return None
        Path(self.data_dir).expanduser().mkdir(parents=True, exist_ok=True)
        return registry.default_artifact_location(self.data_dir)


def default_mlflow_resource() -> MlflowResource:
    kwargs = {}
    if TRACKING_URI_ENV in os.environ:
        kwargs["tracking_uri"] = dg.EnvVar(TRACKING_URI_ENV)
    if DATA_DIR_ENV in os.environ:
        kwargs["data_dir"] = dg.EnvVar(DATA_DIR_ENV)
    return MlflowResource(**kwargs)
