"""Synthetic outcome events with a known truth, generated vectorized (numpy) for tests and benchmarks.

Each (task_type, agent) has a true success probability; one agent per task type is the best (by `gap`).
Optionally the best agent of every task type switches at `switch_day` (the previous best and another
agent swap probabilities), to show how decay lets recommendations follow a change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from learning_pipeline.lib.events.schema import OUTCOME_EVENT_SCHEMA
from learning_pipeline.lib.storage.lake import LakePaths, write_parquet_atomic

COMPLEXITIES = ("low", "medium", "high")
DOMAINS = ("financial", "legal", "medical", "retail")
ERROR_TYPES = ("ToolError", "ValidationError", "RateLimitError")


@dataclass
class BanditTruth:
    task_types: list[str]
    agents: list[str]
    p_before: np.ndarray  # (n_tasks, n_agents) success probability before the switch
    p_after: np.ndarray  # after the switch (equal to p_before when there is no switch)
    switch_day: int | None

    def best_before(self) -> dict[str, str]:
        return {
            t: self.agents[i] for t, i in zip(self.task_types, self.p_before.argmax(axis=1), strict=False)
        }

    def best_after(self) -> dict[str, str]:
        return {t: self.agents[i] for t, i in zip(self.task_types, self.p_after.argmax(axis=1), strict=False)}


def make_truth(n_tasks: int, n_agents: int, gap: float = 0.15, seed: int = 0, switch_day: int | None = None):
    rng = np.random.default_rng(seed)
    task_types = [f"task_{i:03d}" for i in range(n_tasks)]
    agents = [f"Agent{j:02d}" for j in range(n_agents)]
    base = rng.uniform(0.35, 0.6, size=(n_tasks, n_agents))
    best = rng.integers(0, n_agents, size=n_tasks)
    p = base.copy()
    p[np.arange(n_tasks), best] = base.max(axis=1) + gap
    p_after = p.copy()
    if switch_day is not None:
        other = (best + 1 + rng.integers(0, n_agents - 1, size=n_tasks)) % n_agents
        rows = np.arange(n_tasks)
        p_after[rows, best], p_after[rows, other] = p[rows, other], p[rows, best]
    return BanditTruth(task_types, agents, p, p_after, switch_day)


def generate_events(
    truth: BanditTruth,
    n_events: int,
    n_days: int,
    end: datetime | None = None,
    seed: int = 1,
    partial_share: float = 0.1,
    timeout_share: float = 0.05,
    null_task_share: float = 0.02,
) -> pa.Table:
    """`n_events` events spread uniformly over `n_days` days ending at `end`, agents chosen uniformly."""
    rng = np.random.default_rng(seed)
    end = end or datetime(2025, 3, 1, tzinfo=UTC)
    start = end - timedelta(days=n_days)
    n_t, n_a = len(truth.task_types), len(truth.agents)
    offsets_us = np.sort(rng.integers(0, n_days * 86_400_000_000, size=n_events))
    day = offsets_us // 86_400_000_000
    task = rng.integers(0, n_t, size=n_events)
    agent = rng.integers(0, n_a, size=n_events)
    after = np.zeros(n_events, bool) if truth.switch_day is None else day >= truth.switch_day
    p = np.where(after, truth.p_after[task, agent], truth.p_before[task, agent])
    u = rng.random(n_events)
    success = u < p
    kind = rng.random(n_events)
    status = np.where(success, "success", "failure").astype(object)
    # Some non-successes become partial (quality below 0.5) or timeout.
    partial = (~success) & (kind < partial_share)
    timeout = (~success) & (kind >= partial_share) & (kind < partial_share + timeout_share)
    status[partial] = "partial"
    status[timeout] = "timeout"
    quality = np.where(success, rng.uniform(0.6, 1.0, n_events), rng.uniform(0.0, 0.5, n_events))
    quality_null = rng.random(n_events) < 0.05
    latency = rng.lognormal(mean=6.5 + 0.05 * agent, sigma=0.5, size=n_events)
    llm_latency = latency * rng.uniform(0.3, 0.9, n_events)
    tokens = rng.integers(100, 4000, n_events)
    cost = tokens * 2e-6
    cx_idx = rng.integers(0, len(COMPLEXITIES), n_events)
    dom_idx = rng.integers(0, len(DOMAINS), n_events)
    contexts = np.array(
        [f'{{"complexity": "{c}", "domain": "{d}"}}' for c in COMPLEXITIES for d in DOMAINS], dtype=object
    )
    context = contexts[cx_idx * len(DOMAINS) + dom_idx]
    failed = (status == "failure") | (status == "timeout")
    error_type = np.where(
        status == "failure", np.array(ERROR_TYPES, dtype=object)[rng.integers(0, 3, n_events)], None
    )
    task_names = np.array(truth.task_types, dtype=object)[task]
    null_task = rng.random(n_events) < null_task_share
    task_col = np.where(null_task, None, task_names)
    action_col = task_names  # events without task_type fall back to action_type
    ts = pa.array(int(start.timestamp() * 1_000_000) + offsets_us, pa.timestamp("us", tz="UTC"))
    ids = pc.binary_join_element_wise(
        pa.scalar("e-", pa.string()), pa.array(np.arange(n_events).astype(str)), ""
    )
    n = n_events
    cols = {
        "event_id": ids,
        "run_id": pa.nulls(n, pa.string()),
        "agent_name": pa.array(np.array(truth.agents, dtype=object)[agent], pa.string()),
        "agent_type": pa.nulls(n, pa.string()),
        "action_type": pa.array(action_col, pa.string()),
        "task_type": pa.array(task_col, pa.string()),
        "timestamp": ts,
        "start_time": pa.nulls(n, pa.timestamp("us", tz="UTC")),
        "end_time": pa.nulls(n, pa.timestamp("us", tz="UTC")),
        "duration_ms": pa.nulls(n, pa.float64()),
        "latency_ms": pa.array(latency),
        "status": pa.array(status, pa.string()),
        "severity": pa.array(np.where(failed, "error", "info"), pa.string()),
        "llm_latency_ms": pa.array(llm_latency),
        "tokens_used": pa.array(tokens, pa.int64()),
        "cost_usd": pa.array(cost),
        "quality_score": pa.array(np.where(quality_null, np.nan, quality), pa.float64(), from_pandas=True),
        "input": pa.nulls(n, pa.string()),
        "output": pa.nulls(n, pa.string()),
        "error_message": pa.nulls(n, pa.string()),
        "error_type": pa.array(error_type, pa.string()),
        "stack_trace": pa.nulls(n, pa.string()),
        "retry_count": pa.array(np.zeros(n, np.int64)),
        "correlation_id": pa.nulls(n, pa.string()),
        "workflow_id": pa.nulls(n, pa.string()),
        "tags": pa.nulls(n, pa.list_(pa.string())),
        "context": pa.array(context, pa.string()),
        "metadata": pa.nulls(n, pa.string()),
        "selection_propensity": pa.array(np.full(n, 1.0 / n_a)),
        "candidate_agents": pa.nulls(n, pa.list_(pa.string())),
        "decision_id": pa.nulls(n, pa.string()),
        "source_file": pa.array(np.full(n, "synthetic", dtype=object), pa.string()),
        "record_number": pa.array(np.arange(n, dtype=np.int64)),
        "received_at": ts,
    }
    return pa.table(cols, schema=OUTCOME_EVENT_SCHEMA)


def write_outcome_events(paths: LakePaths, table: pa.Table, table_name: str = "outcome_events") -> list[Path]:
    """Write events as Hive partitions lake/<table>/event_date=YYYY-MM-DD/data.parquet (atomically)."""
    dates = pc.strftime(table["timestamp"], format="%Y-%m-%d")
    written = []
    for date in pc.unique(dates).to_pylist():
        part = table.filter(pc.equal(dates, date))
        written.append(write_parquet_atomic(paths.partition_dir(table_name, date) / "data.parquet", part))
    return written
