"""Links from asset materializations to the MLflow UI (URL metadata).

With a tracking server (`http(s)://...`) the links point at that server, which serves the UI too. With a
sqlite or file tracking URI there is no server: the links follow the MLflow UI's path pattern at the address
`mlflow ui --backend-store-uri <uri>` serves by default (http://127.0.0.1:5000), or at
`$LEARNING_PIPELINE_MLFLOW_UI_URL` when set. Credentials in a tracking URI never reach a link.
"""

from __future__ import annotations

import os
from urllib.parse import quote, urlsplit, urlunsplit

import dagster as dg

MLFLOW_UI_URL_ENV = "LEARNING_PIPELINE_MLFLOW_UI_URL"
DEFAULT_LOCAL_MLFLOW_UI = "http://127.0.0.1:5000"


def mlflow_ui_base(tracking_uri: str) -> str:
    """The MLflow UI's address for a tracking URI (see the module docstring)."""
    explicit = os.environ.get(MLFLOW_UI_URL_ENV, "").strip()
    if explicit:
        return explicit.rstrip("/")
    if tracking_uri.startswith(("http://", "https://")):
        parts = urlsplit(tracking_uri)
        host = parts.netloc.rpartition("@")[2]  # never a user or password in a link
        return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))
    return DEFAULT_LOCAL_MLFLOW_UI


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    return f"{mlflow_ui_base(tracking_uri)}/#/experiments/{quote(str(experiment_id))}/runs/{quote(run_id)}"


def model_version_url(tracking_uri: str, model_name: str, version: int | str) -> str:
    return f"{mlflow_ui_base(tracking_uri)}/#/models/{quote(model_name)}/versions/{quote(str(version))}"


def mlflow_link_metadata(
    tracking_uri: str,
    *,
    run_id: str | None = None,
    experiment_id: str | None = None,
    model_name: str | None = None,
    version: int | str | None = None,
    prefix: str = "mlflow",
) -> dict[str, dg.MetadataValue]:
    """`<prefix>_run` and `<prefix>_model_version` URL metadata, for whichever of the two is known."""
    out: dict[str, dg.MetadataValue] = {}
    if run_id and experiment_id is not None:
        out[f"{prefix}_run"] = dg.MetadataValue.url(run_url(tracking_uri, experiment_id, run_id))
    if model_name and version is not None:
        out[f"{prefix}_model_version"] = dg.MetadataValue.url(
            model_version_url(tracking_uri, model_name, version)
        )
    return out


def experiment_of_run(tracking_uri: str, run_id: str) -> str | None:
    """The experiment id of an MLflow run (None when the run cannot be read)."""
    from mlflow.tracking import MlflowClient

    try:
        return MlflowClient(tracking_uri=tracking_uri).get_run(run_id).info.experiment_id
    except Exception:  # a link is a convenience: never fail a materialization over it
        return None
