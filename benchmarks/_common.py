"""What the benchmarks share: their argument parsers, how a run ends, and the tests' helpers for real servers.

Benchmarks run as scripts (`python benchmarks/<name>.py`), so Python puts benchmarks/ on sys.path and they
import this module as `_common`. It puts the checkout on sys.path too: the servers a benchmark starts (the
Kafka broker, `learning-pipeline serve`) are started by the same code as in the tests,
learning_pipeline_tests/_servers.py.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from learning_pipeline_tests._servers import (  # noqa: E402
    demo_command,
    free_port,
    http_server,
    start_kafka_broker,
    stop_process,
)

__all__ = [
    "demo_command",
    "finish",
    "free_port",
    "http_server",
    "latency_summary",
    "parser",
    "simulation_parser",
    "start_kafka_broker",
    "stop_process",
    "timed",
    "unfinished_runs",
]


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser whose --help shows the benchmark's docstring as written."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def simulation_parser(doc: str, *, events: int, days: int, data_dir: str) -> argparse.ArgumentParser:
    """`parser(doc)` with the options of a simulated lake: --events over --days into --data-dir, --seed."""
    result = parser(doc)
    result.add_argument("--events", type=int, default=events)
    result.add_argument("--days", type=int, default=days)
    result.add_argument("--data-dir", default=data_dir)
    result.add_argument("--seed", type=int, default=0)
    return result


def timed(fn, *args, **kwargs):
    """`fn(*args, **kwargs)` and the wall seconds it took."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def latency_summary(seconds: list[float], digits: int = 1) -> str:
    """p50, p95, min and max of latencies in seconds (at least one), with today's date."""
    p95 = statistics.quantiles(seconds, n=20, method="inclusive")[18] if len(seconds) > 1 else seconds[0]
    values = {"p50": statistics.median(seconds), "p95": p95, "min": min(seconds), "max": max(seconds)}
    return (
        " ".join(f"{name}={value:.{digits}f}s" for name, value in values.items())
        + f"  ({datetime.now(UTC):%Y-%m-%d})"
    )


def unfinished_runs(instance) -> list:
    """The Dagster instance's runs that are queued or under way (including being canceled)."""
    import dagster as dg

    status = dg.DagsterRunStatus
    unfinished = [status.QUEUED, status.NOT_STARTED, status.STARTING, status.STARTED, status.CANCELING]
    return instance.get_runs(filters=dg.RunsFilter(statuses=unfinished))


def finish(root: Path, ok: bool, keep: bool) -> int:
    """The exit code of a run that worked in `root`; `root` is removed unless the run failed or `keep`."""
    if ok and not keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"kept {root}")
    return 0 if ok else 1
