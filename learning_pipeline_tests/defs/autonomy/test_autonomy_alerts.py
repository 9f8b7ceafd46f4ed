"""agent_alerts: dedup, acknowledge via the CLI, webhook delivery and failure, ERROR alerts from failed runs,
concurrent writers in several processes, the former DuckDB store imported. Every test runs on both state
stores: SQLite under the data directory and the local PostgreSQL server (a fresh schema per test)."""

import json
import multiprocessing
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg
import duckdb
import pandas as pd
import pytest

from learning_pipeline.cli import main
from learning_pipeline.defs.autonomy.resources import AutonomyResource
from learning_pipeline.defs.autonomy.sensors import run_failure_alert_sensor
from learning_pipeline.lib.autonomy.alerts import (
    Alert,
    AlertStore,
    DegradationRule,
    detect_degradation,
    raise_and_notify,
)
from learning_pipeline.lib.storage.lake import LakePaths
from learning_pipeline.lib.storage.state_store import STATE_URL_ENV, StateStoreBusy
from learning_pipeline.lib.storage.warehouse import lake_connection
from learning_pipeline_tests._postgres_state import (  # backend: autouse, every test on both stores
    backend,  # noqa: F401
    run_in_processes,
)

NOW = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)


def degradation(agent="coder_agent"):
    rates = pd.DataFrame(
        {
            "agent_name": [agent] * 3 + ["other"] * 3,
            "window_index": [0, 1, 2] * 2,
            "n": [100] * 6,
            "success_rate": [0.8, 0.7, 0.6, 0.5, 0.5, 0.49],
        }
    )
    return detect_degradation(rates, DegradationRule())


def test_degradation_rule_and_dedup(lake, capsys):
    alerts = degradation()
    assert [a.agent_name for a in alerts] == ["coder_agent"] and alerts[0].severity == "CRITICAL"  # 25% drop
    store = AlertStore(lake.paths)
    first = store.raise_alert(alerts[0], now=NOW)
    assert first is not None
    # the same condition on later ticks: no new alert while unacknowledged
    assert store.raise_alert(degradation()[0], now=NOW + timedelta(minutes=5)) is None
    assert store.raise_alert(degradation()[0], now=NOW + timedelta(days=3)) is None
    assert main(["alerts", "--data-dir", lake.data_dir, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [row["id"] for row in listed] == [first["id"]]
    assert main(["alerts", "ack", first["id"], "--by", "alice", "--data-dir", lake.data_dir]) == 0
    assert store.get(first["id"])["acknowledged_by"] == "alice"
    assert main(["alerts", "ack", first["id"], "--data-dir", lake.data_dir]) == 2  # already acknowledged
    # acknowledged, but within the dedup window: still suppressed; after it, the condition alerts again
    assert store.raise_alert(degradation()[0], now=NOW + timedelta(hours=1)) is None
    assert store.raise_alert(degradation()[0], now=NOW + timedelta(hours=25)) is not None
    assert len(store.list()) == 2


def test_a_worse_severity_breaks_through_dedup_and_a_milder_one_does_not(lake):
    store = AlertStore(lake.paths)

    def alert(severity):
        return Alert("PERFORMANCE_DEGRADATION", severity, "coder_agent degraded", "", "PD:coder_agent")

    assert store.raise_alert(alert("WARNING"), now=NOW) is not None
    assert store.raise_alert(alert("WARNING"), now=NOW + timedelta(minutes=5)) is None
    critical = store.raise_alert(alert("CRITICAL"), now=NOW + timedelta(minutes=10))  # worse: not suppressed
    assert critical is not None and critical["severity"] == "CRITICAL"
    assert store.raise_alert(alert("CRITICAL"), now=NOW + timedelta(minutes=15)) is None
    assert store.raise_alert(alert("WARNING"), now=NOW + timedelta(minutes=20)) is None  # milder: suppressed
    assert sorted(store.list()["severity"]) == ["CRITICAL", "WARNING"]


class _Receiver(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhook_delivers_json_and_a_failing_webhook_never_raises(lake):
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        store = AlertStore(lake.paths)
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        row, detail = raise_and_notify(
            store, Alert("MILESTONE", "INFO", "10 cycles", "ten", dedup_key="m10"), url, NOW
        )
        assert detail == "HTTP 204" and _Receiver.received[-1]["id"] == row["id"]
        assert _Receiver.received[-1]["alert_type"] == "MILESTONE"
        assert store.get(row["id"])["notified"]
    finally:
        server.shutdown()
        server.server_close()
    # nothing listens there any more: the alert is stored, delivery fails quietly
    row, detail = raise_and_notify(
        store, Alert("MILESTONE", "INFO", "50 cycles", "fifty", dedup_key="m50"), url, NOW
    )
    assert row is not None and "Error" in detail and not store.get(row["id"])["notified"]


@dg.op
def broken_op():
    raise RuntimeError("the learning cycle broke")


@dg.job
def learning_cycle_job():
    broken_op()


def test_error_alert_from_a_failed_run(lake):
    with dg.instance_for_test() as instance:
        result = learning_cycle_job.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        failure = [e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE"][0]
        autonomy = AutonomyResource(now=NOW.isoformat())
        for _ in range(2):  # the same failed run seen twice raises one alert
            context = dg.build_run_status_sensor_context(
                sensor_name="run_failure_alert_sensor",
                dagster_instance=instance,
                dagster_run=result.dagster_run,
                dagster_event=failure,
                resources={"lake": lake, "autonomy": autonomy},
            ).for_run_failure()
            run_failure_alert_sensor(context)
    alerts = AlertStore(lake.paths).list()
    assert len(alerts) == 1
    row = alerts.iloc[0]
    assert row["alert_type"] == "ERROR" and row["severity"] == "CRITICAL"
    assert result.dagster_run.run_id in row["details"]


def _worker(root: str, state_url: str | None, worker: int, ack_id: str, queue) -> None:
    import os

    if state_url:
        os.environ[STATE_URL_ENV] = state_url
    else:
        os.environ.pop(STATE_URL_ENV, None)
    store = AlertStore(LakePaths.at(root))
    outcomes = []
    for i in range(8):
        store.raise_alert(
            Alert("MILESTONE", "INFO", f"w{worker} {i}", "m", dedup_key=f"k{worker}-{i}"), now=NOW
        )
        # every worker also raises the same condition and acknowledges the same alert
        store.raise_alert(Alert("CONVERGENCE", "INFO", "shared", "m", dedup_key="shared"), now=NOW)
        try:
            store.acknowledge(ack_id, f"worker-{worker}")
            outcomes.append("acknowledged")
        except ValueError as error:
            outcomes.append(type(error).__name__)
    queue.put(outcomes)


def test_writers_in_several_processes_dedup_and_acknowledge_once(lake):
    import os

    store = AlertStore(lake.paths)
    target = store.raise_alert(Alert("ERROR", "CRITICAL", "broken", "m", dedup_key="target"), now=NOW)
    url = os.environ.get(STATE_URL_ENV)
    outcomes = run_in_processes(_worker, [(lake.data_dir, url, w, target["id"]) for w in range(3)], 180)
    assert outcomes.count("acknowledged") == 1
    assert outcomes.count("AlertAlreadyAcknowledged") == len(outcomes) - 1
    alerts = store.list()
    assert len(alerts) == 1 + 3 * 8 + 1 and (alerts["dedup_key"] == "shared").sum() == 1
    assert store.get(target["id"])["acknowledged_by"].startswith("worker-")
    with lake_connection(lake.paths) as con:  # the lake snapshot carries the same rows
        assert con.execute("SELECT count(*) FROM agent_alerts").fetchone()[0] == len(alerts)


def test_alerts_of_the_former_duckdb_store_are_imported_once(lake):
    legacy = lake.paths.root / "autonomy" / "alerts.duckdb"
    legacy.parent.mkdir(parents=True)
    with duckdb.connect(str(legacy)) as con:  # the former layout, as the former AlertStore created it
        con.execute(
            "CREATE TABLE agent_alerts (id VARCHAR PRIMARY KEY, alert_type VARCHAR NOT NULL, severity VARCHAR "
            "NOT NULL, title VARCHAR NOT NULL, message VARCHAR NOT NULL, agent_name VARCHAR, model_version "
            "INTEGER, metric VARCHAR, value DOUBLE, threshold DOUBLE, details VARCHAR, source VARCHAR, dedup_key "
            "VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL, acknowledged BOOLEAN NOT NULL DEFAULT false, "
            "acknowledged_at TIMESTAMPTZ, acknowledged_by VARCHAR, notified BOOLEAN NOT NULL DEFAULT false)"
        )
        con.execute(
            "INSERT INTO agent_alerts VALUES ('old1', 'ERROR', 'WARNING', 't', 'm', 'coder_agent', 3, NULL, 0.5, "
            "NULL, '{}', NULL, 'old-key', TIMESTAMPTZ '2026-11-01 10:00:00+00', true, "
            "TIMESTAMPTZ '2026-11-01 11:00:00+00', 'carol', false), ('old2', 'MILESTONE', 'INFO', 't', 'm', "
            "NULL, NULL, NULL, NULL, NULL, '{}', NULL, 'MILESTONE:cycles:10', TIMESTAMPTZ '2026-11-02 10:00:00+00', "
            "false, NULL, NULL, false)"
        )
    store = AlertStore(lake.paths)
    alerts = store.list()
    assert list(alerts["id"]) == ["old2", "old1"]
    old = store.get("old1")
    assert old["acknowledged_by"] == "carol" and old["model_version"] == 3
    assert old["created_at"] == pd.Timestamp("2026-11-01 10:00:00", tz="UTC")
    assert not legacy.exists() and legacy.with_name("alerts.duckdb.imported").exists()
    # imported alerts keep de-duplicating: the milestone is not raised twice
    assert store.raise_alert(milestone_alert(), now=NOW) is None
    assert len(AlertStore(lake.paths).list()) == 2


def milestone_alert():
    return Alert("MILESTONE", "INFO", "10 learning cycles", "ten", dedup_key="MILESTONE:cycles:10")


def _hold_the_writer_lock(root: str, state_url: str | None, holding, release) -> None:
    import os

    if state_url:
        os.environ[STATE_URL_ENV] = state_url
    store = AlertStore(LakePaths.at(root))
    with store.store.write("agent_alerts"):
        holding.set()
        release.wait(120)


def test_readers_go_on_while_a_writer_hangs_and_writers_give_up_with_a_clear_error(lake):
    import os

    store = AlertStore(lake.paths, lock_timeout_seconds=1.0)
    first = store.raise_alert(milestone_alert(), now=NOW)
    ctx = multiprocessing.get_context("spawn")
    holding, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(
        target=_hold_the_writer_lock, args=(lake.data_dir, os.environ.get(STATE_URL_ENV), holding, release)
    )
    holder.start()
    try:
        assert holding.wait(120)
        assert list(store.list()["id"]) == [first["id"]]  # readers are not blocked by the writer
        with pytest.raises(StateStoreBusy, match="writer lock of table agent_alerts"):
            store.raise_alert(Alert("ERROR", "WARNING", "t", "m", dedup_key="while-busy"), now=NOW)
    finally:
        release.set()
        holder.join(60)
    assert holder.exitcode == 0
    assert store.raise_alert(Alert("ERROR", "WARNING", "t", "m", dedup_key="while-busy"), now=NOW) is not None
