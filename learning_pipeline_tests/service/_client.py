"""Talking to a real `learning-pipeline serve` on loopback: start it in a subprocess, send JSON requests over
kept-alive connections, and send hand-written raw HTTP (huge Content-Length, chunked bodies) over a socket."""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from learning_pipeline_tests._servers import free_port, http_server

TOKEN = "s3cret-token"
PREDICT = "/api/learning/predict/agent-selection"


@dataclass
class Served:
    base: str
    port: int
    log: Path
    proc: subprocess.Popen

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def serve_process(
    data_dir: Path, log: Path, *, env: dict | None = None, args: Iterable[str] = (), token: str | None = TOKEN
) -> Iterator[Served]:
    """`learning-pipeline serve` on a free loopback port; stdout and stderr go to `log`."""
    port = free_port()
    full_env = {**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    for name in (
        "MLFLOW_TRACKING_URI",
        "LEARNING_PIPELINE_API_TOKEN",
        "LEARNING_PIPELINE_API_MAX_BODY_BYTES",
    ):
        full_env.pop(name, None)
    if token:
        full_env["LEARNING_PIPELINE_API_TOKEN"] = token
    full_env.update(env or {})
    command = [sys.executable, "-m", "learning_pipeline.cli", "serve", "--data-dir", str(data_dir)]
    command += ["--port", str(port), "--poll-seconds", "0.5", *args]
    base = f"http://127.0.0.1:{port}"
    with http_server(command, log, base + "/api/learning/alerts", env=full_env) as proc:
        yield Served(base, port, log, proc)


def _decode(raw: bytes):
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")


def call(
    base: str, path: str, body=None, headers: dict | None = None, method: str | None = None
) -> tuple[int, object]:
    """One request on a fresh connection: (status, parsed JSON or text)."""
    host, port = base.removeprefix("http://").split(":")
    con = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        return request(con, path, body, headers, method)
    finally:
        con.close()


def request(con: http.client.HTTPConnection, path: str, body=None, headers=None, method=None):
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    method = method or ("POST" if data is not None else "GET")
    con.request(method, path, body=data, headers={"content-type": "application/json", **(headers or {})})
    response = con.getresponse()
    return response.status, _decode(response.read())


class Client:
    """Kept-alive connections, one per thread (for load)."""

    def __init__(self, base: str):
        self.host, port = base.removeprefix("http://").split(":")
        self.port = int(port)
        self.local = threading.local()

    def __call__(self, path: str, body=None, headers=None, method=None) -> tuple[int, object]:
        for attempt in range(2):
            con = getattr(self.local, "con", None)
            if con is None:
                con = self.local.con = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                return request(con, path, body, headers, method)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                con.close()  # the server closed a kept-alive connection (e.g. after a 413): reconnect once
                self.local.con = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def raw_exchange(
    port: int, head: str, chunks: Iterable[bytes] = (), timeout: float = 30.0
) -> tuple[int, bytes]:
    """Send `head` (request line and headers, without the blank line) and then `chunks` one by one, stopping as
    soon as the server answers; returns (status, response body). Measures nothing the server did not send."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.sendall(head.encode() + b"\r\n\r\n")
        for chunk in chunks:
            if select.select([sock], [], [], 0)[0]:
                break  # an answer arrived: stop sending
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        received = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in received or not _complete(received):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no complete answer; got {received[:200]!r}")
            try:
                part = sock.recv(65536)
            except ConnectionResetError:
                break
            if not part:
                break
            received += part
    finally:
        sock.close()
    head_part, _, body = received.partition(b"\r\n\r\n")
    status = int(head_part.split(b" ", 2)[1]) if head_part else 0
    return status, body


def _complete(received: bytes) -> bool:
    head, _, body = received.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


def chunked(payload: bytes, size: int = 16384) -> Iterator[bytes]:
    """`payload` in HTTP/1.1 chunked transfer encoding."""
    for start in range(0, len(payload), size):
        part = payload[start : start + size]
        yield f"{len(part):x}\r\n".encode() + part + b"\r\n"
    yield b"0\r\n\r\n"
