"""learning_summary and the MLflow links, through dagster.materialize and the metadata a person sees."""

import dagster as dg
import pandas as pd
import pytest

from learning_pipeline.defs.autonomy.resources import AutonomyResource
from learning_pipeline.defs.models.resources import MlflowResource
from learning_pipeline.defs.summary import links
from learning_pipeline.defs.summary.assets import Summary, learning_summary, render_markdown, summary_metadata
from learning_pipeline.lib.autonomy import graduation


def materialize_summary(lake) -> dict:
    mlflow = MlflowResource(data_dir=lake.data_dir)
    result = dg.materialize(
        [learning_summary], resources={"lake": lake, "mlflow": mlflow, "autonomy": AutonomyResource()}
    )
    assert result.success
    [mat] = result.asset_materializations_for_node("learning_summary")
    return dict(mat.metadata)


def test_on_an_empty_lake_the_summary_says_what_to_do(lake):
    metadata = materialize_summary(lake)
    assert "No version registered yet: run `learning_cycle_job`" in metadata["summary"].value
    assert metadata["live_version"] == dg.MetadataValue.int(-1)
    assert metadata["open_alerts"] == dg.MetadataValue.int(0)
    assert metadata["accepted_events"] == dg.MetadataValue.int(0)
    assert "live_model_version" not in metadata


def posteriors() -> pd.DataFrame:
    rows = []
    for task, context_key, context_value, agent, mean, p_best in [
        ("analysis", "*", "*", "react_agent", 0.9, 0.97),
        ("analysis", "*", "*", "coder_agent", 0.6, 0.03),
        ("planning", "*", "*", "planner_agent", 0.8, 0.9),
        ("planning", "complexity", "high", "react_agent", 0.7, 0.6),
        ("*", "*", "*", "react_agent", 0.75, 0.5),
    ]:
        rows.append(
            {
                "task_type": task,
                "context_key": context_key,
                "context_value": context_value,
                "agent_name": agent,
                "mean": mean,
                "ci_low": mean - 0.1,
                "ci_high": mean + 0.05,
                "p_best": p_best,
                "n_events": 40,
            }
        )
    return pd.DataFrame(rows)


def test_the_summary_shows_serving_versions_the_last_gate_best_agents_and_alerts():
    from learning_pipeline.defs.summary.assets import _best

    frame = posteriors()
    summary = Summary(
        stages={1: graduation.RETIRED, 2: graduation.LIVE, 3: graduation.SHADOW, 4: graduation.REJECTED},
        last_version={
            "version": 4,
            "gate": "rejected",
            "reason": "interval reaches a regression",
            "improvement": -0.01,
        },
        best=_best(frame, by_context=False),
        best_by_context=_best(frame, by_context=True),
        alerts=pd.DataFrame(
            [
                {
                    "alert_type": "PERFORMANCE_DEGRADATION",
                    "severity": "warning",
                    "title": "react_agent down",
                    "created_at": "x",
                }
            ]
        ),
        accepted_events=1000,
        quarantined_events=7,
    )
    text = render_markdown(summary)
    assert "- **live**: v2" in text and "- **shadow**: v3" in text and "- **canary**: none" in text
    assert "v4: **rejected**, improvement -0.0100 (now rejected). Why: interval reaches a regression" in text
    assert "| analysis " in text and "react_agent" in text and "[0.800, 0.950]" in text
    assert "coder_agent" not in text  # only the best agent per task type
    assert "complexity=high" in text
    assert "Drift: 1 open performance-degradation alert(s)." in text
    assert "Events: 1000 accepted, 7 quarantined." in text

    metadata = summary_metadata(summary, "sqlite:////tmp/mlflow.db")
    assert metadata["live_version"] == dg.MetadataValue.int(2)
    assert metadata["shadow_versions"] == dg.MetadataValue.int(1)
    assert metadata["last_improvement"] == dg.MetadataValue.float(-0.01)
    assert metadata["open_alerts"] == dg.MetadataValue.int(1)
    assert metadata["task_types"] == dg.MetadataValue.int(2)
    assert metadata["live_model_version"] == dg.MetadataValue.url(
        "http://127.0.0.1:5000/#/models/agent-router/versions/2"
    )


@pytest.mark.parametrize(
    ("uri", "base"),
    [
        ("sqlite:////data/mlflow.db", "http://127.0.0.1:5000"),  # no server: where `mlflow ui` serves
        ("http://mlflow.internal:5000/", "http://mlflow.internal:5000"),
        (
            "https://bob:secret@mlflow.example.com/mlflow",
            "https://mlflow.example.com/mlflow",
        ),  # no credentials
    ],
)
def test_mlflow_links_follow_the_tracking_uri(uri, base, monkeypatch):
    monkeypatch.delenv(links.MLFLOW_UI_URL_ENV, raising=False)
    metadata = links.mlflow_link_metadata(
        uri, run_id="abc", experiment_id="3", model_name="agent-router", version=5
    )
    assert metadata == {
        "mlflow_run": dg.MetadataValue.url(f"{base}/#/experiments/3/runs/abc"),
        "mlflow_model_version": dg.MetadataValue.url(f"{base}/#/models/agent-router/versions/5"),
    }


def test_the_mlflow_ui_address_can_be_set(monkeypatch):
    monkeypatch.setenv(links.MLFLOW_UI_URL_ENV, "https://mlflow-ui.example.com/")
    assert links.run_url("sqlite:///x.db", "1", "r") == "https://mlflow-ui.example.com/#/experiments/1/runs/r"
    assert links.mlflow_link_metadata("sqlite:///x.db", model_name="agent-router", version=None) == {}
