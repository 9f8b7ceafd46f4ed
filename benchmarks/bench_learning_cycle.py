"""One learning cycle (train, evaluate, log, register) over N simulated events, with a time breakdown.

    python benchmarks/bench_learning_cycle.py --events 10000000 --days 15 --data-dir /tmp/bench-cycle

The events (with logged propensities) are written straight into the lake layout, one Parquet file per
day (reused on a second run with the same arguments). The cycle for the last day trains on the days
before it (window = days - 1) and evaluates on the last day. It runs twice: the first version is compared
with uniform-random routing; the second (the steady state) with the champion loaded from the registry.
MLflow: sqlite in the data directory.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from datetime import date, timedelta

import _common
import pyarrow.parquet as pq

from learning_pipeline.lib.learning.cycle import CycleConfig, run_cycle
from learning_pipeline.lib.learning.registry import default_artifact_location, default_tracking_uri
from learning_pipeline.lib.simulation.simulate import SimulationConfig, generate_table
from learning_pipeline.lib.storage.lake import LakePaths, write_parquet_atomic


def write_lake(paths: LakePaths, events: int, days: int, end: date, seed: int) -> tuple[int, float]:
    per_day = math.ceil(events / days)
    total, start = 0, time.perf_counter()
    for i in range(days):
        day = end - timedelta(days=days - 1 - i)
        target = paths.partition_dir("outcome_events", day.isoformat()) / "data.parquet"
        if target.exists() and pq.ParquetFile(target).metadata.num_rows == per_day:
            total += per_day
            continue
        cfg = SimulationConfig(
            days=1, events_per_day=per_day, seed=seed * 1000 + i, end_date=day, propensities=True
        )
        table = generate_table(cfg, lineage=True)
        write_parquet_atomic(target, table)
        total += table.num_rows
    return total, time.perf_counter() - start


def main() -> None:
    parser = _common.simulation_parser(
        __doc__, events=10_000_000, days=15, data_dir="/tmp/learning-pipeline-bench-cycle"
    )
    parser.add_argument("--end-date", default="2025-06-15")
    parser.add_argument("--contextual-model", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--n-bootstrap", type=int, default=500)
    args = parser.parse_args()

    paths = LakePaths.at(args.data_dir).ensure()
    end = date.fromisoformat(args.end_date)
    n, gen_s = write_lake(paths, args.events, args.days, end, args.seed)
    print(f"lake: {n:,} events over {args.days} days ({gen_s:.1f} s to generate)")
    for stale in ("mlflow.db", "mlartifacts", "models", "lake/model_versions", "lake/learning_events"):
        target = paths.root / stale
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    config = CycleConfig(
        window_days=args.days - 1,
        eval_days=1,
        contextual_model=args.contextual_model,
        n_bootstrap=args.n_bootstrap,
    )
    uri = default_tracking_uri(paths.root)
    results = []
    for label in ("first version (vs uniform random)", "steady state (vs champion)"):
        start, cpu0 = time.perf_counter(), os.times()
        result = run_cycle(paths, end.isoformat(), config, uri, default_artifact_location(paths.root))
        wall = time.perf_counter() - start
        cpu1 = os.times()
        cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        t = result.timings_ms
        mlflow_ms = (
            t["register"]
            - t.get("register.lake_tables", 0)
            + t.get("load_champion", 0)
            + t.get("mlflow_setup", 0)
        )
        row = {
            "cycle": label,
            "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2),  # this process's CPU time (all threads): less sensitive to a busy machine
            "train_events": int(result.candidate.params["training_samples"]),
            "heldout_events": result.evaluation.n_events,
            "accepted": result.registered.accepted,
            "model_kind": result.candidate.model_kind,
            "breakdown_ms": {k: round(v) for k, v in t.items()},
            "mlflow_share": round(mlflow_ms / t["total"], 3),
        }
        results.append(row)
        print(json.dumps(row, indent=1))
    print("\n| step | first version (ms) | steady state (ms) |\n| --- | ---: | ---: |")
    keys = list(dict.fromkeys(k for r in results for k in r["breakdown_ms"]))
    for key in keys:
        print(
            f"| {key} | {results[0]['breakdown_ms'].get(key, '')} | {results[1]['breakdown_ms'].get(key, '')} |"
        )
    print(f"| MLflow share of total | {results[0]['mlflow_share']:.1%} | {results[1]['mlflow_share']:.1%} |")
    print(
        f"| wall / CPU (s) | {results[0]['wall_s']} / {results[0]['cpu_s']} "
        f"| {results[1]['wall_s']} / {results[1]['cpu_s']} |"
    )
    print(f"load average during the run: {os.getloadavg()}")


if __name__ == "__main__":
    main()
