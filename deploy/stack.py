"""The production-like stack on one machine, on loopback (`make up`, `make down`, `make status`).

Dagster on PostgreSQL (deploy/dagster.yaml: webserver and daemon), an MLflow tracking server on PostgreSQL
with artifacts in the state directory, and the Learning API with its state store on PostgreSQL, all pointed
at one data directory. Each service runs in its own process group; its pid file is `<state>/pids/<name>.pid`
and its log `<state>/logs/<name>.log`. `up` starts what is not running and waits until every service
answers its health URL; `down` stops every process group it started.

    python deploy/stack.py up|down|status [--state-dir .stack] [--data-dir <state>/data] [ports, databases]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PG = "postgres@127.0.0.1:5432"
STATE_SCHEMA = "learning"
# The daemon has no HTTP endpoint: the webserver reports its heartbeats.
DAEMON_HEALTH = "{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }"


@dataclass(frozen=True)
class Service:
    name: str
    command: list[str]
    url: str  # where the operator goes
    health: str  # answers 200 once the service is up
    port: int | None  # must be free before the start


def services(args: argparse.Namespace, state: Path) -> list[Service]:
    home, data = state / "dagster_home", args.data_dir
    dagster = f"http://127.0.0.1:{args.dagster_port}"
    mlflow = f"http://127.0.0.1:{args.mlflow_port}"
    api = f"http://127.0.0.1:{args.api_port}"
    workspace = ["-w", str(ROOT / "workspace.yaml")]
    return [
        Service(
            "mlflow",
            [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(args.mlflow_port)]
            + ["--workers", "1", "--backend-store-uri", f"postgresql+psycopg2://{PG}/{args.mlflow_db}"]
            + ["--artifacts-destination", str(state / "mlflow-artifacts")],
            mlflow,
            f"{mlflow}/health",
            args.mlflow_port,
        ),
        Service(
            "dagster-webserver",
            [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(args.dagster_port), *workspace],
            dagster,
            f"{dagster}/server_info",
            args.dagster_port,
        ),
        Service(
            "dagster-daemon", [str(BIN / "dagster-daemon"), "run", *workspace], f"{dagster}/health", "", None
        ),
        Service(
            "learning-api",
            [str(BIN / "learning-pipeline"), "serve", "--data-dir", str(data), "--port", str(args.api_port)]
            + ["--dagster-home", str(home)],
            f"{api}/api/learning/status",
            f"{api}/api/learning/status",
            args.api_port,
        ),
    ]


def environment(args: argparse.Namespace, state: Path) -> dict[str, str]:
    mlflow = f"http://127.0.0.1:{args.mlflow_port}"
    return os.environ | {
        "DAGSTER_HOME": str(state / "dagster_home"),
        "DAGSTER_PG_URL": f"postgresql+psycopg2://{PG}/{args.dagster_db}",
        "LEARNING_PIPELINE_DATA_DIR": str(args.data_dir),
        "LEARNING_PIPELINE_STATE_URL": f"postgresql://{PG}/{args.dagster_db}"
        f"?options=-csearch_path%3D{STATE_SCHEMA}",
        "MLFLOW_TRACKING_URI": mlflow,
        "LEARNING_PIPELINE_MLFLOW_UI_URL": mlflow,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def prepare_databases(args: argparse.Namespace) -> None:
    """Create the two databases if missing, and the state store's schema in the Dagster database."""
    import psycopg2

    for dbname, statements in (
        ("postgres", [f'CREATE DATABASE "{name}"' for name in (args.dagster_db, args.mlflow_db)]),
        (args.dagster_db, [f'CREATE SCHEMA IF NOT EXISTS "{STATE_SCHEMA}"']),
    ):
        conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=dbname)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                for statement in statements:
                    try:
                        cur.execute(statement)
                    except psycopg2.errors.DuplicateDatabase:
                        pass
        finally:
            conn.close()


def running_pid(pid_file: Path) -> int | None:
    """The pid in `pid_file` if that process still leads the process group it was started in."""
    try:
        pid = int(pid_file.read_text())
        return pid if os.getpgid(pid) == pid else None
    except (OSError, ValueError):
        return None


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def healthy(service: Service, dagster_url: str) -> bool:
    try:
        if service.health:
            with urllib.request.urlopen(service.health, timeout=2) as response:
                return response.status == 200
        request = urllib.request.Request(
            f"{dagster_url}/graphql",
            json.dumps({"query": DAEMON_HEALTH}).encode(),
            {"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            statuses = json.load(response)["data"]["instance"]["daemonHealth"]["allDaemonStatuses"]
        return all(status["healthy"] for status in statuses if status["required"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


def up(args: argparse.Namespace, state: Path) -> int:
    stack = services(args, state)
    (state / "pids").mkdir(parents=True, exist_ok=True)
    (state / "logs").mkdir(exist_ok=True)
    pids = {s.name: running_pid(state / "pids" / f"{s.name}.pid") for s in stack}
    if all(pids.values()):
        print(f"the stack is already running (state in {state}):")
        report(stack, state, pids)
        return 0
    busy = [s for s in stack if not pids[s.name] and s.port and not port_free(s.port)]
    if busy:
        for s in busy:
            print(f"port {s.port} for {s.name} is in use by another process", file=sys.stderr)
        return 1
    prepare_databases(args)
    home = state / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = environment(args, state)
    for s in stack:
        if pids[s.name]:
            continue
        with open(state / "logs" / f"{s.name}.log", "a") as log:
            proc = subprocess.Popen(
                s.command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        (state / "pids" / f"{s.name}.pid").write_text(str(proc.pid))
        pids[s.name] = proc.pid
        print(f"started {s.name} (pid {proc.pid})")
    deadline = time.monotonic() + args.timeout
    for s in stack:
        log = state / "logs" / f"{s.name}.log"
        while not healthy(s, f"http://127.0.0.1:{args.dagster_port}"):
            if running_pid(state / "pids" / f"{s.name}.pid") is None or time.monotonic() > deadline:
                print(f"{s.name} did not become healthy; the end of {log}:\n{tail(log)}", file=sys.stderr)
                down(args, state)
                return 1
            time.sleep(1)
        print(f"{s.name} is healthy")
    report(stack, state, pids)
    return 0


def report(stack: list[Service], state: Path, pids: dict[str, int | None]) -> None:
    for s in stack:
        print(f"  {s.name:<18} {s.url:<42} pid {pids[s.name]:<8} log {state / 'logs' / f'{s.name}.log'}")


def down(args: argparse.Namespace, state: Path) -> int:
    pid_files = sorted((state / "pids").glob("*.pid"))
    if not pid_files:
        print(f"the stack is not running (no pid files in {state / 'pids'})")
    for pid_file in pid_files:
        name, pid = pid_file.stem, running_pid(pid_file)
        if pid is None:
            print(f"{name} was not running")
        else:
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + 20
            while running_pid(pid_file) and time.monotonic() < deadline:
                time.sleep(0.2)
            if running_pid(pid_file):
                os.killpg(pid, signal.SIGKILL)
            print(f"stopped {name} (pid {pid})")
        pid_file.unlink()
    return 0


def status(args: argparse.Namespace, state: Path) -> int:
    stack = services(args, state)
    dagster_url = f"http://127.0.0.1:{args.dagster_port}"
    for s in stack:
        pid = running_pid(state / "pids" / f"{s.name}.pid")
        health = "stopped" if pid is None else "healthy" if healthy(s, dagster_url) else "unhealthy"
        print(f"  {s.name:<18} {health:<10} {s.url:<42} log {state / 'logs' / f'{s.name}.log'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument(
        "--state-dir", default=".stack", help="pid files, logs, Dagster home, MLflow artifacts"
    )
    parser.add_argument("--data-dir", default=None, help="the lake for every service (default <state>/data)")
    parser.add_argument("--dagster-port", type=int, default=3000)
    parser.add_argument("--mlflow-port", type=int, default=5000)
    parser.add_argument("--api-port", type=int, default=8000)
    parser.add_argument(
        "--dagster-db", default="learning_pipeline_dagster", help="also holds the API's state"
    )
    parser.add_argument("--mlflow-db", default="learning_pipeline_mlflow")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for all to be healthy")
    args = parser.parse_args(argv)
    state = Path(args.state_dir).resolve()
    args.data_dir = Path(args.data_dir or state / "data").resolve()
    return {"up": up, "down": down, "status": status}[args.command](args, state)


if __name__ == "__main__":
    sys.exit(main())
