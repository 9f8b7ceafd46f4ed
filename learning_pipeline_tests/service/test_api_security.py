"""API security over real HTTP on loopback (issue 11, items 9-11): credentials in URIs are redacted in answers
and logs; request bodies over the limit get 413 before they are parsed, and agent-selection contexts are
bounded; every state-changing endpoint needs the write token, reads stay open."""

from __future__ import annotations

import json
import threading
import time

import pytest
from fastapi import FastAPI

from learning_pipeline.lib.autonomy.alerts import Alert, AlertStore
from learning_pipeline.lib.redact import redact_text, redact_uri
from learning_pipeline.lib.storage.lake import LakePaths
from learning_pipeline.service.security import check_writes_need_token
from learning_pipeline_tests._servers import free_port
from learning_pipeline_tests.service._client import (
    PREDICT,
    TOKEN,
    call,
    chunked,
    raw_exchange,
    serve_process,
)

PASSWORD = "pa55-w0rd-xyzzy"
MIB = 1024 * 1024
AGENTS = ["coder_agent", "research_agent", "review_agent"]  # the data directory has no model: a cold start


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("security") / "data"


def _alert(paths: LakePaths, key: str) -> dict:
    return AlertStore(paths).raise_alert(Alert("ERROR", "WARNING", f"alert {key}", "m", dedup_key=key))


@pytest.fixture(scope="module")
def guarded(data_dir, tmp_path_factory):
    """`learning-pipeline serve` with the write token, the default body limit, and an MLflow tracking URI
    whose user info carries a password (nothing listens there: the registry is unreachable)."""
    tracking = f"http://alice:{PASSWORD}@127.0.0.1:{free_port()}"
    env = {
        "MLFLOW_TRACKING_URI": tracking,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    }
    log = tmp_path_factory.mktemp("guarded") / "serve.log"
    with serve_process(data_dir, log, env=env) as served:
        served.tracking = tracking
        yield served


# ---- 9: credentials redacted ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri, shown",
    [
        ("http://alice:s3cret@mlflow:5000", "http://alice:***@mlflow:5000"),
        ("postgresql+psycopg2://u:p%40ss@db:5432/mlflow", "postgresql+psycopg2://u:***@db:5432/mlflow"),
        ("https://h/a?X-Amz-Signature=abc&x=1&token=t", "https://h/a?X-Amz-Signature=***&x=1&token=***"),
        (
            "postgresql://u@db/x?password=pw&sslmode=require",
            "postgresql://u@db/x?password=***&sslmode=require",
        ),
        ("http://a:b@c@host/", "http://a:***@host/"),
        ("sqlite:////data/mlflow.db", "sqlite:////data/mlflow.db"),
        ("models:/agent-router/3", "models:/agent-router/3"),
        ("/data/dir", "/data/dir"),
        (None, None),
    ],
)
def test_redact_uri_hides_passwords_and_secret_parameters(uri, shown):
    assert redact_uri(uri) == shown


def test_redact_text_hides_every_uri_in_a_message():
    text = (
        "API request to http://alice:s3cret@h:1/api failed; also postgresql://u:pw@db/x and password=hunter2"
    )
    assert redact_text(text) == (
        "API request to http://alice:***@h:1/api failed; also postgresql://u:***@db/x and password=***"
    )


def test_every_log_record_is_redacted_whatever_its_logger_or_handler():
    import io
    import logging

    from learning_pipeline.lib.redact import install_log_redaction

    install_log_redaction()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("some.library.configured.later")
    logger.addHandler(handler)
    try:
        raise ConnectionError(f"cannot reach http://alice:{PASSWORD}@registry:5000/api")
    except ConnectionError as error:
        logger.error("request to %s failed: %s", f"http://bob:{PASSWORD}@registry", error, exc_info=True)
    logger.warning(f"dsn host=db password={PASSWORD} user=x")
    logger.removeHandler(handler)
    shown = stream.getvalue()
    assert PASSWORD not in shown
    assert "bob:***@registry" in shown and "alice:***@registry" in shown and "password=***" in shown
    assert "Traceback" in shown and "ConnectionError" in shown


def test_status_answers_and_logs_never_show_the_tracking_password(guarded):
    status, body = call(guarded.base, "/api/learning/status")
    assert status == 200
    assert body["tracking_uri"] == guarded.tracking.replace(PASSWORD, "***")
    assert PASSWORD not in json.dumps(body)
    # endpoints that talk to the (unreachable) registry: their answers and errors hide it too
    for path in ("/api/learning/graduation", "/api/learning/metrics", "/api/learning/alerts"):
        status, answer = call(guarded.base, path)
        assert status < 500 or status == 503, (path, status, answer)
        assert PASSWORD not in json.dumps(answer)
    time.sleep(1.5)  # at least two champion polls against the unreachable registry
    output = guarded.output()
    assert "alice:***@127.0.0.1" in output  # the start-up line names the tracking server, redacted
    assert PASSWORD not in output


# ---- 10: body size and context bounds ---------------------------------------------------------------------


def _head(path: str, **headers) -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return "\r\n".join(lines)


def _padded(size: int) -> bytes:
    """A valid agent-selection body of exactly `size` bytes (JSON padded with spaces)."""
    core = json.dumps({"task_type": "analysis", "top_k": 2, "candidate_agents": AGENTS}).encode()
    return core[:-1] + b" " * (size - len(core)) + b"}"


def test_a_declared_300_mb_body_is_refused_before_it_is_sent(guarded):
    started = time.monotonic()
    status, body = raw_exchange(guarded.port, _head(PREDICT, Content_Length=300_000_000))
    assert status == 413 and str(MIB) in json.loads(body)["detail"]
    assert time.monotonic() - started < 10
    # the size check comes before the token check of a write endpoint
    status, _ = raw_exchange(guarded.port, _head("/api/learning/alerts/x/ack", Content_Length=300_000_000))
    assert status == 413


def test_bodies_up_to_one_mib_are_parsed_and_larger_ones_get_413(guarded):
    status, body = raw_exchange(guarded.port, _head(PREDICT, Content_Length=MIB), [_padded(MIB)])
    assert status == 200 and len(json.loads(body)["recommendations"]) <= 2
    big = _padded(MIB + 1)
    status, body = raw_exchange(
        guarded.port,
        _head(PREDICT, Content_Length=len(big)),
        [big[i : i + 65536] for i in range(0, len(big), 65536)],
    )
    assert status == 413


def test_a_chunked_body_is_counted_as_it_streams(guarded):
    head = _head(PREDICT, Transfer_Encoding="chunked")
    status, body = raw_exchange(guarded.port, head, chunked(_padded(MIB - 10), 65536))
    assert status == 200 and "recommendations" in json.loads(body)
    status, body = raw_exchange(guarded.port, head, chunked(_padded(3 * MIB), 65536))
    assert status == 413 and "limit" in json.loads(body)["detail"]


@pytest.mark.parametrize(
    "context, named",
    [
        ({f"k{i}": "v" for i in range(51)}, "at most 50 keys"),
        ({"k" * 65: "v"}, "keys have 1 to 64"),
        ({"": "v"}, "keys have 1 to 64"),
        ({"complexity": "x" * 257}, "context.complexity has 257 characters"),
        ({"n": 2**70}, "context.n is out of the 64-bit integer range"),
    ],
)
def test_context_keys_and_values_are_bounded(guarded, context, named):
    status, body = call(
        guarded.base, PREDICT, {"task_type": "analysis", "context": context, "candidate_agents": AGENTS}
    )
    assert status == 422
    assert "body.context" in body["message"] and named in body["message"]


def test_context_at_the_bounds_is_served(guarded):
    context = {f"{i:02d}" + "k" * 62: "v" * 256 for i in range(50)}
    status, body = call(
        guarded.base, PREDICT, {"task_type": "analysis", "context": context, "candidate_agents": AGENTS}
    )
    assert status == 200 and body["recommendations"] is not None


def test_the_limit_comes_from_the_environment(data_dir, tmp_path):
    with serve_process(
        data_dir, tmp_path / "serve.log", env={"LEARNING_PIPELINE_API_MAX_BODY_BYTES": "2048"}
    ) as served:
        status, _ = call(served.base, PREDICT, _padded(2048))
        assert status == 200
        status, _ = raw_exchange(served.port, _head(PREDICT, Content_Length=2049), [_padded(2049)])
        assert status == 413


def test_an_invalid_limit_stops_serve_with_a_clear_message(data_dir, tmp_path):
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-m", "learning_pipeline.cli", "serve", "--data-dir", str(data_dir)],
        env={**__import__("os").environ, "LEARNING_PIPELINE_API_MAX_BODY_BYTES": "1MB"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert "LEARNING_PIPELINE_API_MAX_BODY_BYTES must be a whole number of bytes" in run.stderr


# ---- 11: every state-changing endpoint needs the token --------------------------------------------------


def test_acknowledging_an_alert_needs_the_token(guarded, data_dir):
    row = _alert(LakePaths.at(data_dir), "ack-needs-token")
    path = f"/api/learning/alerts/{row['id']}/ack"
    status, body = call(guarded.base, path, {"by": "mallory"})
    assert status == 401 and "missing" in body["detail"]
    status, body = call(guarded.base, path, {"by": "mallory"}, {"X-API-Token": TOKEN + "x"})
    assert status == 401 and "invalid" in body["detail"]
    assert AlertStore(LakePaths.at(data_dir)).get(row["id"])["acknowledged"] is False
    status, body = call(guarded.base, path, {"by": "oncall"}, {"X-API-Token": TOKEN})
    assert status == 200 and body["acknowledged_by"] == "oncall"


def test_every_state_changing_operation_refuses_requests_without_the_token(guarded):
    status, schema = call(guarded.base, "/openapi.json")
    assert status == 200
    writes, reads = [], []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            concrete = path.replace("{alert_id}", "none").replace("{version}", "1")
            if method == "get":
                reads.append(concrete)
            elif not operation.get("x-read-only"):
                writes.append((method.upper(), concrete))
    assert ("POST", "/api/learning/alerts/none/ack") in writes
    assert ("POST", "/api/learning/graduation/1/approve") in writes
    for method, path in writes:
        for headers, state in (({}, "missing"), ({"X-API-Token": "wrong"}, "invalid")):
            status, body = call(guarded.base, path, {}, headers, method=method)
            assert status == 401 and state in body["detail"], (method, path, status, body)
    for path in reads:  # reads stay open
        if "{" not in path:
            status, _ = call(guarded.base, path)
            assert status in (200, 503), (path, status)


def test_without_a_configured_token_writes_are_disabled(data_dir, monkeypatch):
    import uvicorn

    from learning_pipeline.service.app import create_app

    monkeypatch.delenv("LEARNING_PIPELINE_API_TOKEN", raising=False)
    row = _alert(LakePaths.at(data_dir), "writes-disabled")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(str(data_dir)), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.1)
        status, body = call(
            base, f"/api/learning/alerts/{row['id']}/ack", {"by": "x"}, {"X-API-Token": TOKEN}
        )
        assert status == 403 and "disabled" in body["detail"]
        status, body = call(base, "/api/learning/status")
        assert status == 200 and body["writes_enabled"] is False
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def test_an_app_with_an_unguarded_write_route_is_refused():
    app = FastAPI()

    @app.post("/api/learning/decisions/{decision_id}/close")
    def close(decision_id: str) -> dict:
        return {}

    with pytest.raises(RuntimeError, match="does not depend on require_token"):
        check_writes_need_token(app)
