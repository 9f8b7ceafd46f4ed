"""`learning-pipeline demo`, the README's first command, run as a user runs it (small volume)."""

import subprocess
import sys

import duckdb


def test_demo_runs_every_job_and_reports(tmp_path):
    data_dir, home = tmp_path / "data", tmp_path / "dagster_home"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "learning_pipeline.cli",
            "demo",
            "--data-dir",
            str(data_dir),
            "--dagster-home",
            str(home),
            "--days",
            "3",
            "--events-per-day",
            "1500",
            "--seed",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ingested 3 day(s)" in out.stdout
    assert "model agent-router v1: accepted" in out.stdout
    assert "dagster dev" in out.stdout

    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM outcome_events").fetchone()[0] == 4500
        assert con.execute("SELECT count(DISTINCT task_type) FROM agent_recommendations").fetchone()[0] > 1
    # The runs are in the local instance the UI reads.
    assert (home / "history" / "runs.db").exists() or any(home.rglob("runs.db"))
