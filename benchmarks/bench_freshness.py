"""Freshness: time from an events file landing to the updated `agent_posteriors` materialization, with a real
`dagster-daemon` running the project's code location (workspace.yaml) on a temporary sqlite instance.

    python benchmarks/bench_freshness.py --mode default --drops 6
    python benchmarks/bench_freshness.py --mode tuned --drops 10

The landing-zone sensor requests `landing_job` (ingest, daily stats, windows, posteriors, recommendations in
one run and one process) for each day with new files.
default  Dagster's defaults around it: sensor every 30 s, run queue polled every 5 s, sensors evaluated serially.
tuned    the project's settings: sensor every 5 s (LEARNING_PIPELINE_LANDING_SENSOR_SECONDS), run queue polled
         every second (dagster.yaml), sensors on threads.
A warm-up drop (3 days of history) is not counted. Each drop lands one JSONL file of `--events` events dated
today; the latency is the posterior materialization's timestamp minus the landing time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common

REPO = _common.REPO
MODES = {
    "default": {"landing": "30", "dequeue": None, "threads": False},
    "tuned": {"landing": "5", "dequeue": 1, "threads": True},
}


def instance_yaml(mode: dict) -> str:
    lines = [
        "telemetry:",
        "  enabled: false",
        "run_coordinator:",
        "  module: dagster.core.run_coordinator",
        "  class: QueuedRunCoordinator",
    ]
    if mode["dequeue"]:
        lines += ["  config:", f"    dequeue_interval_seconds: {mode['dequeue']}"]
    # as the project's dagster.yaml: steps of a pool (duckdb_warehouse) run one at a time across runs
    lines += ["concurrency:", "  pools:", "    default_limit: 1", "    granularity: op"]
    if mode["threads"]:
        lines += ["sensors:", "  use_threads: true", "  num_workers: 4"]
    return "\n".join(lines) + "\n"


def posterior_ts_after(instance, after: float) -> float | None:
    """Timestamp of the newest agent_posteriors materialization by a run created after `after`.

    A run created after the drop was requested by a sensor tick that had already staged the dropped file, so
    its posteriors include the new events; a run already under way when the file landed does not count.
    """
    import dagster as dg

    event = instance.get_latest_materialization_event(dg.AssetKey("agent_posteriors"))
    if event is None or event.timestamp <= after:
        return None
    record = instance.get_run_record_by_id(event.run_id)
    return event.timestamp if record is not None and record.create_timestamp.timestamp() > after else None


def wait_for_posteriors(instance, after: float, timeout: float) -> float | None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        ts = posterior_ts_after(instance, after)
        if ts is not None:
            return ts
        time.sleep(0.25)
    return None


def wait_until_idle(instance, timeout: float) -> bool:
    """Wait until no run is queued or under way."""
    deadline = time.time() + timeout
    while _common.unfinished_runs(instance):
        if time.time() > deadline:
            return False
        time.sleep(0.5)
    return True


def main() -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--mode", choices=sorted(MODES), default="tuned")
    parser.add_argument("--drops", type=int, default=8)
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=240.0)
    parser.add_argument("--keep", action="store_true", help="keep the temp directory")
    args = parser.parse_args()
    mode = MODES[args.mode]

    root = Path(tempfile.mkdtemp(prefix="freshness-"))
    home, data = root / "home", root / "data"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml(mode))
    workspace = REPO / "workspace.yaml"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "LEARNING_PIPELINE_DATA_DIR": str(data),
        "LEARNING_PIPELINE_LANDING_SENSOR_SECONDS": mode["landing"],
    }
    os.environ.update({"DAGSTER_HOME": str(home)})

    import dagster as dg

    from learning_pipeline.lib.simulation.simulate import SimulationConfig, write_simulation

    # create the instance's sqlite storage before the daemon starts: concurrent first migrations collide
    with dg.DagsterInstance.get() as instance:
        instance.get_runs(limit=1)
        posterior_ts_after(instance, 0.0)
    log = open(root / "daemon.log", "w")
    daemon = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(workspace)],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    latencies: list[float] = []
    try:
        with dg.DagsterInstance.get() as instance:
            t0 = time.time()
            write_simulation(
                SimulationConfig(days=3, events_per_day=args.events, seed=1),
                data,
                prefix="warmup",
                write_truth=False,
            )
            if wait_for_posteriors(instance, t0, args.timeout * 2) is None:
                print(f"warm-up: no posteriors within {args.timeout * 2:.0f} s; see {root / 'daemon.log'}")
                return 1
            # the landing sensor requests no run for a day whose landing run is still queued (that run reads
            # the new files): drops start on an idle queue, so each is picked up by a run requested after it
            if not wait_until_idle(instance, args.timeout * 2):
                print(f"warm-up: runs still queued after {args.timeout * 2:.0f} s; see {root / 'daemon.log'}")
                return 1
            print(f"warm-up done in {time.time() - t0:.1f} s")
            for i in range(args.drops):
                time.sleep(2.0)
                t0 = time.time()
                write_simulation(
                    SimulationConfig(days=1, events_per_day=args.events, seed=100 + i),
                    data,
                    prefix=f"drop{i}",
                    write_truth=False,
                )
                ts = wait_for_posteriors(instance, t0, args.timeout)
                if ts is None:
                    print(f"drop {i}: no posterior update within {args.timeout:.0f} s")
                    continue
                latencies.append(ts - t0)
                print(f"drop {i}: {ts - t0:.1f} s")
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
        log.close()
    if latencies:
        print(
            f"mode={args.mode} drops={len(latencies)}/{args.drops} events/drop={args.events} "
            + _common.latency_summary(latencies)
        )
    return _common.finish(root, bool(latencies), args.keep)


if __name__ == "__main__":
    sys.exit(main())
