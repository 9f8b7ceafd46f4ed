"""`learning-pipeline` as a person types it (a subprocess): mistakes end with one line saying what is wrong,
a mistyped data directory is never created, tables print no NaN/None/<NA>, every option's --help shows its
default, results print as sentences with --json for scripts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from learning_pipeline.lib.autonomy.alerts import Alert, AlertStore
from learning_pipeline.lib.storage.lake import LakePaths


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "learning_pipeline.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line_error(out: subprocess.CompletedProcess, *words: str) -> str:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    for word in words:
        assert word in last, last
    return last


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["demo", "--days", "abc"], ["--days", "expected a whole number", "'abc'"]),
        (["demo", "--days", "1"], ["--days", "at least 2"]),
        (["simulate", "--days", "1", "--switch-day", "99"], ["--switch-day 99", "1 simulated days"]),
        (["simulate", "--malformed-share", "2"], ["--malformed-share", "within [0, 1]"]),
        (["autonomy-demo", "--days", "10", "--switch-day", "12"], ["--switch-day 12"]),
    ],
)
def test_bad_values_end_in_one_line(args, words, tmp_path):
    one_line_error(cli(*args, "--data-dir", str(tmp_path / "data")), *words)
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["alerts"],
        ["graduation", "status"],
        ["settings"],
        ["sql", "SELECT 1"],
        ["rollback", "--version", "1", "--reason", "x"],
    ],
)
def test_a_missing_data_dir_is_refused_not_created(args, tmp_path):
    missing = tmp_path / "nonexistent" / "dir"
    one_line_error(cli(*args, "--data-dir", str(missing)), "does not exist")
    assert not missing.parent.exists()


def test_help_shows_defaults():
    out = cli("demo", "--help")
    assert out.returncode == 0
    assert "(default: 7)" in out.stdout and "(default: 5000)" in out.stdout
    assert "(default: False)" not in out.stdout


@pytest.fixture
def alerts_dir(tmp_path) -> Path:
    store = AlertStore(LakePaths.at(tmp_path).ensure())
    store.raise_alert(Alert("ERROR", "CRITICAL", "a run failed", "landing_job failed", dedup_key="e1"))
    store.raise_alert(
        Alert(
            "MILESTONE", "INFO", "10 cycles", "ten", dedup_key="m1", agent_name="react_agent", model_version=2
        )
    )
    return tmp_path


def test_alerts_table_has_no_missing_value_markers_and_ack_needs_by(alerts_dir):
    out = cli("alerts", "--data-dir", str(alerts_dir))
    assert out.returncode == 0, out.stderr
    assert "a run failed" in out.stdout and "react_agent" in out.stdout
    for marker in ("NaN", "None", "<NA>", "NaT"):
        assert marker not in out.stdout
    rows = json.loads(cli("alerts", "--json", "--data-dir", str(alerts_dir)).stdout)
    first = rows[0]["id"]
    one_line_error(cli("alerts", "ack", first, "--data-dir", str(alerts_dir)), "--by")
    acked = cli("alerts", "ack", first, "--by", "alice", "--data-dir", str(alerts_dir))
    assert (
        acked.returncode == 0 and acked.stdout.startswith(f"acknowledged {first}") and "alice" in acked.stdout
    )
    as_json = cli("alerts", "ack", rows[1]["id"], "--by", "bob", "--json", "--data-dir", str(alerts_dir))
    assert json.loads(as_json.stdout)["acknowledged_by"] == "bob"


def test_settings_set_prints_sentences_or_json(alerts_dir):
    args = ["settings", "set", "min_new_events=250", "--by", "alice", "--reason", "fewer cycles"]
    out = cli(*args, "--data-dir", str(alerts_dir))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith("min_new_events: ") and "-> 250 (by alice)" in out.stdout
    out = cli(*args[:2], "min_new_events=default", *args[3:], "--json", "--data-dir", str(alerts_dir))
    assert json.loads(out.stdout)[0]["old_value"] == 250


def test_sql_lists_tables_and_queries_the_lake(alerts_dir):
    listed = cli("sql", "--data-dir", str(alerts_dir))
    assert listed.returncode == 0 and "agent_alerts" in listed.stdout.split()
    out = cli(
        "sql",
        "SELECT alert_type, count(*) AS n FROM agent_alerts GROUP BY 1 ORDER BY 1",
        "--json",
        "--data-dir",
        str(alerts_dir),
    )
    assert json.loads(out.stdout) == [{"alert_type": "ERROR", "n": 1}, {"alert_type": "MILESTONE", "n": 1}]
    one_line_error(cli("sql", "SELEC 1", "--data-dir", str(alerts_dir)), "syntax error")
