"""After a small `learning-pipeline demo`: the Dagster webserver and the MLflow UI in headless Chromium (the
browser check fails on any page error and writes four screenshots), a tidy MLflow, and /status over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest
from mlflow import MlflowClient

from learning_pipeline.cli.browser_check import CHROMIUM, SHOTS
from learning_pipeline_tests._servers import free_port, wait_for_http

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("after_demo")
    data, home = root / "data", root / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "LEARNING_PIPELINE_"))}
    command = [sys.executable, "-m", "learning_pipeline.cli", "demo", "--data-dir", str(data)]
    command += ["--dagster-home", str(home), "--days", "3", "--events-per-day", "800", "--seed", "5"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=1500, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return root, data, home, out, env


def test_demo_output_is_progress_and_summary_without_library_noise(demo):
    *_, out, _ = demo
    assert (
        "daily_job" in out.stdout and "(day 3 of 3)" in out.stdout and "learning-pipeline sql" in out.stdout
    )
    for noise in ("Downloading artifacts", "UserWarning", "INFO mlflow", "Successfully registered"):
        assert noise not in out.stdout + out.stderr


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (.ci/run installs it)")
def test_browser_check_opens_both_uis_without_page_errors(demo):
    root, data, home, _, env = demo
    shots = root / "shots"
    command = [sys.executable, "-m", "learning_pipeline.cli.browser_check", "--data-dir", str(data)]
    command += ["--dagster-home", str(home), "--out", str(shots), "--timeout", "600"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=1500, env=env)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    for name in SHOTS:
        png = (shots / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and 20_000 < len(png) < 150_000, name


def test_mlflow_is_tidy(demo):
    _, data, *_ = demo
    client = MlflowClient(tracking_uri=f"sqlite:///{data / 'mlflow.db'}")
    experiments = client.search_experiments()
    assert [e.name for e in experiments] == ["agent-learning-cycles"]  # no empty "Default"
    assert experiments[0].tags["mlflow.experimentKind"] == "custom_model_development"
    (run,) = client.search_runs([experiments[0].experiment_id])
    partition = run.data.tags["partition"]
    assert run.info.run_name.startswith(f"{partition} accepted +") and run.info.run_name.endswith(
        "uniform_random"
    )
    assert partition in run.data.tags["mlflow.note.content"]
    assert run.data.params["baseline_kind"] == "uniform_random"
    assert {"baseline.dr", "candidate.dr", "candidate_minus_baseline.dr"} <= set(run.data.metrics)
    assert not [m for m in run.data.metrics if m.startswith(("uniform_random.", "champion."))]
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {"plots/posterior_densities.png", "plots/success_over_time.png"}


def test_status_shows_sensors_as_running_or_stopped(demo):
    _, data, home, _, env = demo
    port = free_port()
    command = [sys.executable, "-m", "learning_pipeline.cli", "serve", "--data-dir", str(data)]
    proc = subprocess.Popen(
        [*command, "--port", str(port), "--dagster-home", str(home)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}/api/learning"
        wait_for_http(f"{base}/alerts", proc)
        with urllib.request.urlopen(f"{base}/status", timeout=120) as response:
            status = json.loads(response.read())
    finally:
        proc.terminate()
        proc.wait(30)
    sensors = {s["name"]: s["status"] for s in status["sensors"]}
    assert sensors["landing_zone_sensor"] == "RUNNING"  # the demo set its cursor; it stays on by default
    assert sensors["kafka_ingest_sensor"] == "STOPPED"
    assert set(sensors.values()) <= {"RUNNING", "STOPPED"}
