"""`make up` / `make down` bring the production-like stack up on loopback and stop it again, for real."""

import json
import re
import socket
import subprocess
import urllib.request
import uuid
from pathlib import Path

import psycopg2
import pytest

from learning_pipeline_tests._servers import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("mlflow", "dagster-webserver", "dagster-daemon", "learning-api")

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def make(target: str, state: Path, args: str = "") -> subprocess.CompletedProcess:
    """`make <target>`; `-o` keeps make from reinstalling the venv the test runs in."""
    command = ["make", "-s", "-o", ".venv/.installed", target, f"STACK_DIR={state}", f"STACK_ARGS={args}"]
    return subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=420)


def get_json(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        return json.load(response)


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_make_up_serves_the_four_services_and_make_down_frees_their_ports(tmp_path):
    state = tmp_path / "stack"
    ports = {"dagster": free_port(), "mlflow": free_port(), "api": free_port()}
    # Databases that do not exist yet: `up` creates them.
    databases = {kind: f"stack_test_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("dagster", "mlflow")}
    args = " ".join(f"--{kind}-port {port}" for kind, port in ports.items())
    args += " " + " ".join(f"--{kind}-db {name}" for kind, name in databases.items())
    try:
        started = make("up", state, args)
        assert started.returncode == 0, started.stdout + started.stderr
        for name in SERVICES:
            assert f"{name} is healthy" in started.stdout
            assert str(state / "logs" / f"{name}.log") in started.stdout
            assert (state / "logs" / f"{name}.log").exists()
        pids = dict(re.findall(r"started (\S+) \(pid (\d+)\)", started.stdout))
        assert set(pids) == set(SERVICES)

        mlflow, dagster = f"http://127.0.0.1:{ports['mlflow']}", f"http://127.0.0.1:{ports['dagster']}"
        with urllib.request.urlopen(f"{mlflow}/health", timeout=10) as response:
            assert response.status == 200
        assert "dagster_webserver_version" in get_json(f"{dagster}/server_info")
        query = "{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }"
        daemons = get_json(f"{dagster}/graphql", {"query": query})["data"]["instance"]["daemonHealth"]
        statuses = {d["daemonType"]: d["healthy"] for d in daemons["allDaemonStatuses"] if d["required"]}
        assert {"SENSOR", "SCHEDULER", "QUEUED_RUN_COORDINATOR"} <= set(statuses)
        assert all(statuses.values()), statuses
        api = get_json(f"http://127.0.0.1:{ports['api']}/api/learning/status")
        assert api["running"] is True
        assert api["data_dir"] == str(state / "data")
        assert api["tracking_uri"] == mlflow
        assert api["state_store"].startswith(f"postgresql://postgres@127.0.0.1:5432/{databases['dagster']}")

        again = make("up", state, args)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "already running" in again.stdout and "started" not in again.stdout
        for name, pid in pids.items():
            assert re.search(rf"{name}\s.*pid {pid}\s", again.stdout), again.stdout
    finally:
        stopped = make("down", state)
        admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test")
        admin.autocommit = True
        with admin.cursor() as cur:
            for name in databases.values():
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()

    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    for name, pid in pids.items():
        assert f"stopped {name} (pid {pid})" in stopped.stdout
        assert not Path(f"/proc/{pid}").exists()
    assert all(port_free(port) for port in ports.values())
    assert "not running" in make("down", state).stdout
