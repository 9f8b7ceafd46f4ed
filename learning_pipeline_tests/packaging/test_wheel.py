"""The wheel carries everything the pipeline needs: built from the checkout, installed in a fresh virtual
environment, `learning-pipeline demo` runs from a directory outside the checkout.

The fresh environment gets the wheel alone; its third-party dependencies come from the test environment's
site-packages through a `.pth` line (installing them again would only re-download the lock). A `.pth` line
does not run the editable-install hook found there, so `learning_pipeline` resolves to the wheel's copy.
"""

import site
import subprocess
import sys
import zipfile
from pathlib import Path

import duckdb
import pytest

from learning_pipeline_tests._servers import demo_command

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
        ],
        check=True,
    )
    (path,) = out.glob("learning_pipeline-*.whl")
    return path


def test_wheel_ships_sql_and_no_tests(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "learning_pipeline/dbt_like_sql/staging/stg_outcome_events.sql" in names
    assert any(n.startswith("learning_pipeline/dbt_like_sql/marts/training/") for n in names)
    assert not any(n.startswith("learning_pipeline_tests/") for n in names)


@pytest.mark.slow
def test_wheel_runs_the_demo_outside_the_checkout(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "test-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([python, "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [python, "-c", "import learning_pipeline; print(learning_pipeline.__file__)"],
        cwd=elsewhere,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert where.startswith(purelib), where

    result = subprocess.run(
        demo_command("data", "home", seed=3, program=[venv / "bin" / "learning-pipeline"]),
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ingested 3 day(s)" in result.stdout
    assert "model agent-router v1: accepted" in result.stdout
    with duckdb.connect(str(elsewhere / "data" / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM agent_stats").fetchone()[0] > 0
