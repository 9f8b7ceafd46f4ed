"""The first partition follows the data: the environment variable, else the data directory's
`first_partition_date` (what `learning-pipeline demo` writes), else the default; older events are quarantined
with reason `before_first_partition`. Each case loads the code location in a fresh process, as Dagster does."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from learning_pipeline.defs.partitions import DEFAULT_START_DATE, START_DATE_ENV, write_start_date
from learning_pipeline.lib.storage.lake import DATA_DIR_ENV, land_records

PROBE = """
import json, os, sys
import dagster as dg
import pyarrow.parquet as pq
from learning_pipeline.definitions import defs
from learning_pipeline.defs.events.assets import outcome_events
from learning_pipeline.defs.partitions import daily_partitions
from learning_pipeline.defs.resources import LakeResource

job = defs().resolve_job_def("daily_job")
out = {"first": daily_partitions.get_first_partition_key(), "job_first": job.partitions_def.get_first_partition_key()}
if len(sys.argv) > 1:  # ingest that day and report the quarantine reasons
    lake = LakeResource(data_dir=os.environ["LEARNING_PIPELINE_DATA_DIR"])
    assert dg.materialize([outcome_events], partition_key=sys.argv[1], resources={"lake": lake}).success
    quarantine = lake.paths.partition_dir("quarantined_events", sys.argv[1]) / "data.parquet"
    out["reasons"] = sorted(r["reason"] for r in pq.read_table(quarantine).to_pylist())
print(json.dumps(out))
"""


def probe(data_dir, *args, start_env: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != START_DATE_ENV}
    env[DATA_DIR_ENV] = str(data_dir)
    if start_env:
        env[START_DATE_ENV] = start_env
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_without_a_start_the_default_applies(tmp_path):
    assert probe(tmp_path / "data") == {"first": DEFAULT_START_DATE, "job_first": DEFAULT_START_DATE}


def test_the_data_directorys_start_moves_the_partitions_and_older_events_are_quarantined(tmp_path):
    data_dir = tmp_path / "data"
    today = datetime.now(UTC).date()
    start = today - timedelta(days=2)
    write_start_date(data_dir, start.isoformat())
    old = datetime.combine(start - timedelta(days=1), datetime.min.time(), UTC).isoformat()
    land_records(
        data_dir / "landing",
        [{"event_id": "too-old", "agent_name": "a", "timestamp": old, "status": "success"}],
    )
    # The record is older than the first partition: it is quarantined on the day it arrived.
    result = probe(data_dir, today.isoformat())
    assert result["first"] == result["job_first"] == start.isoformat()
    assert result["reasons"] == ["before_first_partition"]


def test_a_data_directory_in_the_working_directory_is_not_read_without_the_variable(tmp_path):
    write_start_date(tmp_path / "data", "2026-03-01")
    env = {k: v for k, v in os.environ.items() if k not in (START_DATE_ENV, DATA_DIR_ENV)}
    code = "from learning_pipeline.defs.partitions import daily_partitions as p; print(p.get_first_partition_key())"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == DEFAULT_START_DATE


def test_the_environment_variable_wins_over_the_data_directory(tmp_path):
    write_start_date(tmp_path, "2026-03-01")
    assert probe(tmp_path, start_env="2026-02-01")["first"] == "2026-02-01"


def test_a_malformed_start_says_where_it_came_from(tmp_path):
    (tmp_path / "first_partition_date").write_text("March 1st\n")
    env = {DATA_DIR_ENV: str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", "import learning_pipeline.defs.partitions"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode != 0
    assert "first_partition_date must be YYYY-MM-DD, got 'March 1st'" in out.stderr


@pytest.mark.parametrize("bad", ["2026-13-01", "yesterday"])
def test_write_start_date_refuses_a_non_date(tmp_path, bad):
    with pytest.raises(ValueError):
        write_start_date(tmp_path, bad)


def test_the_demos_start_keeps_the_earliest_day_and_yields_to_the_variable(tmp_path, monkeypatch):
    from learning_pipeline.cli.demo import start_partitions_at
    from learning_pipeline.defs.partitions import read_start_date, start_date_file

    monkeypatch.setenv(START_DATE_ENV, "2026-01-01")
    start_partitions_at(tmp_path, "2026-11-29")
    assert not start_date_file(tmp_path).exists()  # the variable decides; nothing written

    monkeypatch.delenv(START_DATE_ENV)
    start_partitions_at(tmp_path, "2026-11-29")
    start_partitions_at(tmp_path, "2026-11-30")  # a re-run over later data keeps the earlier start
    assert read_start_date(tmp_path) == "2026-11-29"
    start_partitions_at(tmp_path, "2026-11-20")
    assert read_start_date(tmp_path) == "2026-11-20"
