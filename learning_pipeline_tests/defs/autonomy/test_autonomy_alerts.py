"""agent_alerts: dedup, acknowledge via the CLI, webhook delivery and failure, ERROR alerts from failed runs."""

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg
import pandas as pd

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
