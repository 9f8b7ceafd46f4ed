"""`learning-pipeline simulate` shows its progress on stderr while it generates (a subprocess, as a user runs
it); the summary on stdout stays as it was, also with --json."""

import json
import subprocess
import sys


def test_simulate_prints_progress_on_stderr(tmp_path):
    out = subprocess.run(
        [
            *(sys.executable, "-m", "learning_pipeline.cli", "simulate"),
            *("--data-dir", str(tmp_path / "data"), "--days", "4", "--events-per-day", "50"),
            *("--end-date", "2025-06-30", "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["events"] == 200
    assert out.stderr.strip().splitlines() == [
        "simulating events: 50 of 200 (25%)",
        "simulating events: 100 of 200 (50%)",
        "simulating events: 150 of 200 (75%)",
        "simulating events: 200 of 200 (100%)",
    ]
