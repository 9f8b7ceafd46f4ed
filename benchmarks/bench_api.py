"""Learning API: POST /api/learning/predict/agent-selection latency and throughput on loopback.

    python benchmarks/bench_api.py --data-dir DATA --rate 500 --seconds 20
    python benchmarks/bench_api.py --rate 500 --seconds 20        # builds a demo data dir first (~1 min)

Starts `learning-pipeline serve` (one uvicorn process) on a free port, then runs two phases with a stdlib
asyncio HTTP/1.1 client over keep-alive connections in this process (the client shares the machine's cores):

open loop   requests are scheduled at exactly `--rate` per second for `--seconds` (after a 2 s warm-up);
            latency is measured from the scheduled send time, so a server falling behind shows up as queueing
            (no coordinated omission); p50/p90/p99/max and achieved requests/s.
closed loop `--connections` connections send back to back for `--seconds / 2`: the saturated requests/s.

Request bodies cycle through known task types with contexts and a few unknown ones (cold start), Thompson mode.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import _common
import numpy as np

PATH = "/api/learning/predict/agent-selection"
TASKS = ["analysis", "coding", "research", "summarization", "planning", "never_seen_task"]
CONTEXTS = [{"complexity": "high", "domain": "financial"}, {"complexity": "low"}, {}, {"domain": "legal"}]


def bodies(n: int = 64) -> list[bytes]:
    out = []
    for i in range(n):
        body = json.dumps(
            {"task_type": TASKS[i % len(TASKS)], "context": CONTEXTS[i % len(CONTEXTS)], "top_k": 3}
        )
        out.append(
            f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
        )
    return out


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def open_loop(port: int, rate: float, seconds: float, connections: int) -> dict:
    reqs = bodies()
    queue: asyncio.Queue = asyncio.Queue()
    latencies: list[float] = []
    errors = 0

    async def worker():
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = 0
        while True:
            scheduled, record = await queue.get()
            if scheduled is None:
                break
            writer.write(reqs[i % len(reqs)])
            i += 1
            status = await read_response(reader)
            if record:
                latencies.append(time.perf_counter() - scheduled)
                errors += status != 200
        writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    warmup = 2.0
    start = time.perf_counter()
    n = int((seconds + warmup) * rate)
    for k in range(n):
        due = start + k / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((due, k / rate >= warmup))
    for _ in workers:
        queue.put_nowait((None, False))
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - start - warmup
    lat = np.array(latencies) * 1000
    return {
        "target_rps": rate,
        "requests": len(lat),
        "errors": errors,
        "achieved_rps": round(len(lat) / elapsed, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p90_ms": round(float(np.percentile(lat, 90)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "max_ms": round(float(lat.max()), 2),
    }


async def closed_loop(port: int, seconds: float, connections: int) -> dict:
    reqs = bodies()
    count = 0
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker(offset: int):
        nonlocal count
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = offset
        while time.perf_counter() < stop:
            t = time.perf_counter()
            writer.write(reqs[i % len(reqs)])
            i += 1
            await read_response(reader)
            latencies.append(time.perf_counter() - t)
            count += 1
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(connections)))
    lat = np.array(latencies) * 1000
    return {
        "connections": connections,
        "requests": count,
        "rps": round(count / (time.perf_counter() - start), 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
    }


def main() -> None:
    parser = _common.parser(__doc__)
    parser.add_argument(
        "--data-dir", default=None, help="existing data dir (default: build one with the demo)"
    )
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory()
    data_dir = args.data_dir
    if data_dir is None:
        data_dir = str(Path(tmp.name) / "data")
        print("building a demo data dir ...", file=sys.stderr, flush=True)
        subprocess.run(
            _common.demo_command(data_dir, Path(tmp.name) / "home"), check=True, capture_output=True
        )
    port = _common.free_port()
    env = {**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    command = [sys.executable, "-m", "learning_pipeline.cli", "serve"]
    command += ["--data-dir", data_dir, "--port", str(port)]
    status_url = f"http://127.0.0.1:{port}/api/learning/status"
    try:
        with _common.http_server(command, Path(tmp.name) / "serve.log", status_url, env=env):
            with urllib.request.urlopen(status_url, timeout=5) as resp:
                status = json.loads(resp.read())
            model = status["models_loaded"][0]
            print(
                f"serving {model['source']} ({model['agents']} agents, {model['model_kind']} model); "
                f"cpus={os.cpu_count()}",
                flush=True,
            )
            result = asyncio.run(open_loop(port, args.rate, args.seconds, args.connections))
            print("open loop  ", json.dumps(result), flush=True)
            result = asyncio.run(closed_loop(port, args.seconds / 2, args.connections))
            print("closed loop", json.dumps(result), flush=True)
    finally:
        tmp.cleanup()


if __name__ == "__main__":
    main()
