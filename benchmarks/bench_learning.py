"""Full recompute of agent stats + posteriors, side by side with pandas, the seed's per-event model and
MABWiser; plus recommendation throughput.

    .venv/bin/python benchmarks/bench_learning.py --events 10000000 [--data-dir /tmp/lp_bench] [--baseline-events 1000000]

Events are generated once into <data-dir>/lake/outcome_events (Hive partitions, 30 days) and reused.
The seed's per-event model and MABWiser run on the first --baseline-events events (they are slow);
their per-million figures are extrapolated linearly to the full count (both are O(n) loops/fits).
"""

from __future__ import annotations

import random
import time
from collections import defaultdict, deque
from datetime import date, timedelta
from pathlib import Path

import _common
import numpy as np
import pandas as pd
import pyarrow.dataset as ds
from scipy import stats

from learning_pipeline.lib.bandit.thompson import Recommender, compute_posteriors
from learning_pipeline.lib.simulation import SimulationConfig, write_lake
from learning_pipeline.lib.storage.lake import LakePaths
from learning_pipeline.lib.storage.sql_runner import SqlProject
from learning_pipeline.lib.storage.warehouse import lake_connection

END = date(2025, 2, 28)  # the last simulated day
N_DAYS = 30
N_TASKS, N_AGENTS = 50, 10


def ensure_data(paths: LakePaths, n_events: int) -> None:
    marker = paths.root / f".simulated_{n_events}"
    if marker.exists():
        return
    config = SimulationConfig(
        days=N_DAYS,
        events_per_day=n_events // N_DAYS,
        seed=100,
        truth_seed=0,
        end_date=END,
        agents=N_AGENTS,
        task_types=N_TASKS,
        gap=0.15,
        missing_task_type_share=0.02,
        missing_quality_share=0.05,
    )
    write_lake(config, paths.root)  # one day in memory at a time
    marker.write_text("ok")


# ----------------------------------------------------------------------------- this pipeline
def pipeline_full(paths: LakePaths):
    """Wall times per stage, plus the process CPU time (all DuckDB threads) of the whole run."""
    project = SqlProject.load()
    con = lake_connection(paths)
    con.execute("SET preserve_insertion_order = false").fetchall()
    t0, c0 = time.perf_counter(), time.process_time()
    as_of = con.execute('SELECT max("timestamp") FROM outcome_events').fetchall()[0][0]
    vars = {"as_of": as_of, "recent_from": (as_of - timedelta(days=2)).date()}
    project.run(
        con, select=["agent_daily_stats", "agent_daily_errors", "agent_daily_latency_hist"], vars=vars
    )
    t1, c1 = time.perf_counter(), time.process_time()
    project.run(
        con,
        select=["agent_stats", "agent_task_stats"],
        vars=vars,
        exclude=["agent_daily_stats", "agent_daily_errors", "agent_daily_latency_hist"],
    )
    t2, c2 = time.perf_counter(), time.process_time()
    daily = con.sql("SELECT * FROM agent_daily_stats").to_arrow_table().to_pandas()
    post = compute_posteriors(daily, n_samples=1000)
    t3, c3 = time.perf_counter(), time.process_time()
    return post, {
        "daily_aggregates": t1 - t0,
        "window_marts": t2 - t1,
        "posteriors": t3 - t2,
        "total": t3 - t0,
        "cpu_daily_aggregates": c1 - c0,
        "cpu_window_marts": c2 - c1,
        "cpu_posteriors": c3 - c2,
        "cpu_total": c3 - c0,
    }


# ----------------------------------------------------------------------------- pandas, same measures
def pandas_full(paths: LakePaths):
    t0 = time.perf_counter()
    cols = [
        "agent_name",
        "task_type",
        "action_type",
        "timestamp",
        "status",
        "latency_ms",
        "llm_latency_ms",
        "tokens_used",
        "cost_usd",
        "quality_score",
        "context",
        "error_type",
    ]
    df = (
        ds.dataset(paths.table("outcome_events"), format="parquet", partitioning="hive")
        .to_table(columns=cols)
        .to_pandas()
    )
    df["task"] = df["task_type"].fillna(df["action_type"]).fillna("unspecified")
    df["complexity"] = df["context"].str.extract(r'"complexity":\s*"([^"]*)"', expand=False)
    df["domain"] = df["context"].str.extract(r'"domain":\s*"([^"]*)"', expand=False)
    q = df["quality_score"].fillna(0.5)
    st = df["status"]
    flags = {"succ": "success", "fail": "failure", "part": "partial", "tout": "timeout"}
    for flag, status in flags.items():
        df[flag] = (st == status).astype(np.int64)
    df["preward"] = np.where(st == "partial", q, 0.0)
    df["reward"] = df["succ"] + df["preward"]
    as_of = df["timestamp"].max()
    df["day"] = df["timestamp"].dt.floor("D")
    frames = []
    agg = {"n": ("succ", "size")} | {name: (name, "sum") for name in [*flags, "preward", "reward"]}
    agg |= {
        "lat": ("latency_ms", "mean"),
        "llm": ("llm_latency_ms", "mean"),
        "tokens": ("tokens_used", "sum"),
    }
    agg |= {"cost": ("cost_usd", "sum"), "quality": ("quality_score", "mean")}
    levels = [("*", None), ("complexity", "complexity"), ("domain", "domain")]
    windows = {
        "1h": pd.Timedelta(hours=1),
        "24h": pd.Timedelta(hours=24),
        "7d": pd.Timedelta(days=7),
        "all": None,
    }
    daily_parts = []
    for _key, col in levels:
        for task_level in (True, False):
            keys = (["task"] if task_level else []) + ["agent_name"] + ([col] if col else [])
            daily = df.groupby(["day"] + keys, observed=True).agg(**agg)
            daily_parts.append(daily)
            for wname, length in windows.items():
                sel = df if length is None else df[df["timestamp"] > as_of - length]
                g = sel.groupby(keys, observed=True)
                out = g.agg(**agg)
                out[["p50", "p95", "p99"]] = g["latency_ms"].quantile([0.5, 0.95, 0.99]).unstack()
                out["success_rate"] = out["succ"] / out["n"]
                out["window"] = wname
                frames.append(out)
    t1 = time.perf_counter()
    # Posteriors from the task-level daily counts (no decay), P(best) by sampling.
    task_daily = daily_parts[0].groupby(["task", "agent_name"]).sum()
    alpha = 1 + task_daily["succ"] + task_daily["preward"]
    beta = 1 + task_daily["fail"] + task_daily["tout"] + task_daily["part"] - task_daily["preward"]
    post = pd.DataFrame({"alpha": alpha, "beta": beta})
    post["mean"] = alpha / (alpha + beta)
    post["ci_low"] = stats.beta.ppf(0.025, alpha, beta)
    post["ci_high"] = stats.beta.ppf(0.975, alpha, beta)
    rng = np.random.default_rng(0)
    draws = rng.beta(alpha.to_numpy()[:, None], beta.to_numpy()[:, None], size=(len(post), 1000))
    d = pd.DataFrame(draws, index=post.index)
    winners = d.groupby(level="task").transform("max") == d
    post["p_best"] = winners.mean(axis=1)
    t2 = time.perf_counter()
    return post, {"stats": t1 - t0, "posteriors": t2 - t1, "total": t2 - t0}


# ----------------------------------------------------------------------------- the seed's per-event model
class SeedAgentPerformanceModel:
    """Re-implementation of the seed's AgentPerformanceModel: per-event updates of per-agent, per-task and
    per-context counters, bounded deques of latencies and quality scores (maxlen 100), running averages,
    EMA, and Thompson sampling with Beta(successes + 1, failures + 1) at prediction time."""

    def __init__(self, ema_alpha: float = 0.1):
        self.ema_alpha = ema_alpha
        self.agent_stats = defaultdict(
            lambda: {
                "total": 0,
                "successes": 0,
                "failures": 0,
                "avg_latency": 0.0,
                "ema_success": 0.0,
                "latencies": deque(maxlen=100),
                "quality_scores": deque(maxlen=100),
            }
        )
        self.task_stats = defaultdict(lambda: defaultdict(lambda: {"successes": 0, "failures": 0}))
        self.context_stats = defaultdict(lambda: defaultdict(lambda: {"successes": 0, "failures": 0}))
        self.samples_processed = 0

    def update(self, event: dict) -> None:
        agent = event["agent_name"]
        task = event.get("task_type") or event.get("action_type") or "unspecified"
        success = event["status"] == "success"
        s = self.agent_stats[agent]
        n = s["total"]
        s["total"] = n + 1
        if success:
            s["successes"] += 1
        else:
            s["failures"] += 1
        latency = event.get("latency_ms")
        if latency is not None:
            s["latencies"].append(latency)
            s["avg_latency"] = (s["avg_latency"] * n + latency) / (n + 1)
        quality = event.get("quality_score")
        if quality is not None:
            s["quality_scores"].append(quality)
        s["ema_success"] = self.ema_alpha * float(success) + (1 - self.ema_alpha) * s["ema_success"]
        t = self.task_stats[task][agent]
        t["successes" if success else "failures"] += 1
        context = event.get("context") or {}
        for key, value in context.items():
            c = self.context_stats[(task, key, value)][agent]
            c["successes" if success else "failures"] += 1
        self.samples_processed += 1

    def predict_best_agent(self, task_type: str, context: dict | None = None, top_k: int = 3) -> list[dict]:
        agents = self.task_stats.get(task_type) or {
            a: {"successes": 0, "failures": 0} for a in self.agent_stats
        }
        scores = {a: np.random.beta(v["successes"] + 1, v["failures"] + 1) for a, v in agents.items()}
        ranked = sorted(scores.items(), key=lambda kv: -kv[1])[:top_k]
        return [{"agent_name": a, "score": float(sc), "rank": i + 1} for i, (a, sc) in enumerate(ranked)]


def seed_events(paths: LakePaths, n: int) -> list[dict]:
    import json

    cols = ["agent_name", "task_type", "action_type", "status", "latency_ms", "quality_score", "context"]
    table = ds.dataset(paths.table("outcome_events"), format="parquet", partitioning="hive").head(
        n, columns=cols
    )
    events = table.to_pylist()
    for e in events:  # the seed receives deserialized events (context as a dict)
        e["context"] = json.loads(e["context"]) if e["context"] else {}
    return events


def seed_model_run(events: list[dict]) -> float:
    model = SeedAgentPerformanceModel()
    start = time.perf_counter()
    for e in events:
        model.update(e)
    return time.perf_counter() - start


def mabwiser_run(paths: LakePaths, n: int) -> float:
    from mabwiser.mab import MAB, LearningPolicy

    table = ds.dataset(paths.table("outcome_events"), format="parquet", partitioning="hive").head(
        n, columns=["agent_name", "status"]
    )
    decisions = table.column("agent_name").to_numpy(zero_copy_only=False)
    rewards = (table.column("status").to_numpy(zero_copy_only=False) == "success").astype(int)
    mab = MAB(arms=sorted(set(decisions)), learning_policy=LearningPolicy.ThompsonSampling(), seed=0)
    start = time.perf_counter()
    mab.fit(decisions=decisions, rewards=rewards)
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- recommendations
def recommendation_throughput(post: pd.DataFrame, n_requests: int = 500_000) -> dict:
    rec, build = _common.timed(Recommender, post)
    rng = np.random.default_rng(1)
    tasks = np.array(
        sorted(post.loc[post.task_type != "*", "task_type"].unique()) + ["unknown_task"], dtype=object
    )
    requests = pd.DataFrame(
        {
            "task_type": tasks[rng.integers(0, len(tasks), n_requests)],
            "complexity": np.array(["low", "medium", "high", "unseen"], dtype=object)[
                rng.integers(0, 4, n_requests)
            ],
        }
    )
    _, t_batch = _common.timed(rec.recommend_batch, requests, 3, "thompson", rng)
    rows = rec.resolve_batch(requests)
    _, t_core = _common.timed(rec.recommend_rows, rows, 3, "thompson", rng)
    _, t_mean = _common.timed(rec.recommend_batch, requests, 3, "mean")
    # Single-call latency: median and p99 over many calls.
    lat = []
    for i in range(3000):
        t = tasks[i % len(tasks)]
        s = time.perf_counter()
        rec.recommend(t, {"complexity": "high"}, top_k=3, mode="thompson", rng=rng)
        lat.append(time.perf_counter() - s)
    lat = np.array(lat[100:]) * 1000
    return {
        "index_build_s": build,
        "batch_thompson_decisions_per_s": n_requests / t_batch,
        "batch_core_thompson_decisions_per_s": n_requests / t_core,
        "batch_mean_decisions_per_s": n_requests / t_mean,
        "single_call_p50_ms": float(np.median(lat)),
        "single_call_p99_ms": float(np.percentile(lat, 99)),
        "agents": len(rec.agents),
    }


def main(argv=None) -> None:
    parser = _common.parser(__doc__)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--baseline-events", type=int, default=1_000_000)
    parser.add_argument("--data-dir", default="/tmp/lp_bench_learning")
    parser.add_argument("--skip-pandas", action="store_true")
    args = parser.parse_args(argv)
    random.seed(0)
    np.random.seed(0)

    paths = LakePaths.at(Path(args.data_dir) / str(args.events)).ensure()
    _, t_gen = _common.timed(ensure_data, paths, args.events)
    print(
        f"data: {args.events:,} events in {paths.table('outcome_events')} (generated/checked in {t_gen:.1f}s)"
    )

    post, t_pipe = pipeline_full(paths)
    print(
        "pipeline (DuckDB SQL models + numpy posteriors): wall "
        + ", ".join(f"{k} {v:.2f}s" for k, v in t_pipe.items() if not k.startswith("cpu_"))
    )
    print(
        "                                          CPU time "
        + ", ".join(f"{k[4:]} {v:.2f}s" for k, v in t_pipe.items() if k.startswith("cpu_"))
    )
    per_m = args.events / 1e6
    results = {"pipeline": t_pipe["total"]}
    if not args.skip_pandas:
        _, t_pd = pandas_full(paths)
        print(
            "pandas (same measures):                        "
            + ", ".join(f"{k} {v:.2f}s" for k, v in t_pd.items())
        )
        results["pandas"] = t_pd["total"]
    n_base = min(args.baseline_events, args.events)
    events, t_conv = _common.timed(seed_events, paths, n_base)
    t_seed = seed_model_run(events)
    del events
    seed_full = t_seed * args.events / n_base
    print(
        f"seed per-event model: {t_seed:.2f}s for {n_base:,} events ({t_seed / (n_base / 1e6):.2f}s per million; "
        f"{seed_full:.1f}s extrapolated to {args.events:,}; dict conversion {t_conv:.1f}s not counted)"
    )
    results["seed per-event model (extrapolated)"] = seed_full
    t_mab = mabwiser_run(paths, n_base)
    mab_full = t_mab * args.events / n_base
    print(
        f"MABWiser ThompsonSampling fit: {t_mab:.2f}s for {n_base:,} events ({t_mab / (n_base / 1e6):.2f}s per million; "
        f"{mab_full:.1f}s extrapolated; agent only, no task or context)"
    )
    results["MABWiser TS fit (extrapolated)"] = mab_full

    print(f"\nfull recompute over {args.events:,} events ({per_m:.0f}M):")
    for name, secs in results.items():
        print(f"  {name:40s} {secs:8.2f}s   x{secs / t_pipe['total']:.1f} of the pipeline")

    rec = recommendation_throughput(post)
    print("\nrecommendations (posterior table of {} rows, {} agents):".format(len(post), rec["agents"]))
    for k, v in rec.items():
        if k != "agents":
            print(f"  {k:38s} {v:,.3f}" if v < 100 else f"  {k:38s} {v:,.0f}")


if __name__ == "__main__":
    main()
