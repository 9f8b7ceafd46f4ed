"""End-to-end freshness of a live version that learns online: from outcomes recorded through the SDK
(`LoopClient` over HTTP, POST /outcomes) to the first served decision that reflects them.

    python benchmarks/bench_online_freshness.py --trials 30 --epoch-seconds 5

A version is trained on five simulated days with `online_epoch_seconds` set, approved and made live; then
`learning-pipeline serve` (real HTTP on loopback) and a real `dagster-daemon` on the project's workspace
(landing sensor ingesting the same outcomes into the lake) run side by side. Each trial asks for a decision
in one context, records `--outcomes` successes of that decision's least likely agent with the SDK, and asks
again every 20 ms until that agent's served score (its belief) or propensity moves: the latency is the time from the record
call to that answer. The policy takes evidence at epoch boundaries, so the expected latency is about half an
epoch plus the request time.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import _common
from bench_freshness import MODES, instance_yaml

from learning_pipeline.client import LoopClient
from learning_pipeline.lib.learning.cycle import CycleConfig, run_cycle
from learning_pipeline_tests._models_fixtures import operator_makes_live, simulated_lake, sqlite_uri

TOKEN = "bench-online-freshness"


def propensities(answer: dict) -> dict[str, float]:
    return {r["agent_name"]: r["selection_propensity"] for r in answer["recommendations"]}


def beliefs(answer: dict) -> dict[str, tuple[float, float]]:
    """Per agent: the served score (the version's belief with its evidence) and selection propensity."""
    return {r["agent_name"]: (r["score"], r["selection_propensity"]) for r in answer["recommendations"]}


def main() -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epoch-seconds", type=float, default=5.0)
    parser.add_argument("--outcomes", type=int, default=1, help="outcomes recorded per trial")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--keep", action="store_true", help="keep the temp directory")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="online-freshness-"))
    home, data = root / "home", root / "data"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml(MODES["tuned"]))
    today = datetime.now(UTC).date()
    paths, cfg, _ = simulated_lake(
        data, days=5, events_per_day=1500, seed=11, end_date=today - timedelta(days=1), pii_share=0.0
    )
    uri = sqlite_uri(data)
    config = CycleConfig(window_days=5, eval_days=1, n_bootstrap=100, online_epoch_seconds=args.epoch_seconds)
    result = run_cycle(paths, (today - timedelta(days=1)).isoformat(), config, uri)
    if not result.registered.accepted:
        print(f"the gate rejected the first version: {result.evaluation.gate.reason}")
        return 1
    operator_makes_live(paths, uri, result.registered.version, by="benchmark operator")

    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "LEARNING_PIPELINE_DATA_DIR": str(data),
        "LEARNING_PIPELINE_LANDING_SENSOR_SECONDS": "5",
        "LEARNING_PIPELINE_API_TOKEN": TOKEN,
    }
    bin_dir = Path(sys.executable).parent
    daemon_log = open(root / "daemon.log", "w")
    daemon = subprocess.Popen(
        [str(bin_dir / "dagster-daemon"), "run", "-w", str(_common.REPO / "workspace.yaml")],
        env=env,
        cwd=_common.REPO,
        stdout=daemon_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    port = _common.free_port()
    serve = [str(bin_dir / "learning-pipeline"), "serve", "--data-dir", str(data), "--port", str(port)]
    serve += ["--tracking-uri", uri, "--poll-seconds", "1"]
    latencies: list[float] = []
    try:
        with _common.http_server(
            serve, root / "api.log", f"http://127.0.0.1:{port}/api/learning/status", env=env
        ):
            client = LoopClient(url=f"http://127.0.0.1:{port}", token=TOKEN)
            pause = random.Random(0)
            for trial in range(args.trials):
                time.sleep(pause.uniform(0, args.epoch_seconds))  # outcomes at random points of an epoch
                task = cfg.task_types[trial % len(cfg.task_types)]
                ctx = {
                    "complexity": cfg.complexities[trial % len(cfg.complexities)],
                    "domain": cfg.domains[0],
                }
                before = client.decide(task, ctx, top_k=len(cfg.agents))
                if before["stage"] != "live":
                    print(f"trial {trial}: served by {before['stage']}, not the live version")
                    return 1
                p0, before_beliefs = propensities(before), beliefs(before)
                agent = min(p0, key=p0.get)
                started = time.perf_counter()
                for _ in range(args.outcomes):
                    client.record(
                        {
                            "agent_name": agent,
                            "task_type": task,
                            "status": "success",
                            "context": ctx,
                            "decision_id": before["decision_id"],
                            "timestamp": datetime.now(UTC).isoformat(),
                        }
                    )
                while time.perf_counter() - started < args.timeout:
                    now = beliefs(client.decide(task, ctx, top_k=len(cfg.agents)))
                    if now[agent] != (before_beliefs[agent]):
                        latencies.append(time.perf_counter() - started)
                        break
                    time.sleep(0.02)
                else:
                    print(f"trial {trial}: no change within {args.timeout:.0f} s")
    finally:
        _common.stop_process(daemon)
        daemon_log.close()
    if latencies:
        q = (
            statistics.quantiles(latencies, n=20, method="inclusive")
            if len(latencies) > 1
            else latencies * 19
        )
        print(
            f"epoch={args.epoch_seconds:g}s trials={len(latencies)}/{args.trials} outcomes/trial={args.outcomes} "
            f"p50={statistics.median(latencies):.2f}s p95={q[18]:.2f}s min={min(latencies):.2f}s "
            f"max={max(latencies):.2f}s  ({datetime.now(UTC):%Y-%m-%d})"
        )
    return _common.finish(root, len(latencies) == args.trials, args.keep)


if __name__ == "__main__":
    sys.exit(main())
