import json
import os
import subprocess
import sys

from learning_pipeline.cli import main


def test_simulate_via_subprocess(tmp_path):
    data_dir = tmp_path / "data"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "learning_pipeline.cli",
            "simulate",
            "--data-dir",
            str(data_dir),
            "--days",
            "2",
            "--events-per-day",
            "150",
            "--seed",
            "4",
            "--end-date",
            "2025-06-30",
            "--malformed-share",
            "0.1",
            "--duplicate-share",
            "0.1",
            "--propensities",
            "--switch-day",
            "1",
            "--file-events",
            "100",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "events:      300 valid (2025-06-29 .. 2025-06-30)" in proc.stdout
    assert "duplicates:  30" in proc.stdout and "bad records: 30" in proc.stdout
    assert "truth.json" in proc.stdout
    files = sorted((data_dir / "landing").glob("*.jsonl"))
    assert len(files) == 4  # 360 lines, 100 per file
    assert sum(len(f.read_text().splitlines()) for f in files) == 360
    truth = json.loads((data_dir / "simulation" / "truth.json").read_text())
    assert truth["switch_date"] == "2025-06-30" and truth["config"]["propensities"] is True


def test_simulate_main_json_and_env_data_dir(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LEARNING_PIPELINE_DATA_DIR", str(tmp_path / "env-data"))
    code = main(["simulate", "--days", "1", "--events-per-day", "20", "--end-date", "2025-06-30", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["events"] == 20 and summary["files"] == 1 and summary["bad_records"] == 0
    assert len(list((tmp_path / "env-data" / "landing").glob("*.jsonl"))) == 1


def test_simulate_rejects_bad_arguments(tmp_path, capsys):
    assert main(["simulate", "--data-dir", str(tmp_path), "--end-date", "2999-01-01"]) == 2
    assert "in the future" in capsys.readouterr().err
    proc = subprocess.run(
        [sys.executable, "-m", "learning_pipeline.cli", "simulate", "--malformed-share", "1.5"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ},
    )
    assert proc.returncode == 2 and "must be within [0, 1]" in proc.stderr
