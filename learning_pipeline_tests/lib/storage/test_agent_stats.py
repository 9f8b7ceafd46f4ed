"""agent_stats / agent_task_stats equal an independent pandas recomputation on the same events."""

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from learning_pipeline.lib.simulation import SimulationConfig, generate_table
from learning_pipeline.lib.storage.sql_runner import SqlProject
from learning_pipeline_tests._learning_fixtures import events_connection

END = datetime(2025, 3, 1, tzinfo=UTC)
AS_OF = END - timedelta(hours=5)  # mid-day, so the 24h window spans two partitions
WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24)}


@pytest.fixture(scope="module")
def run():
    config = SimulationConfig(
        days=10,
        events_per_day=1200,
        seed=9,
        truth_seed=8,
        end_date=(END - timedelta(days=1)).date(),
        agents=3,
        task_types=3,
        missing_task_type_share=0.02,
        missing_quality_share=0.05,
    )
    table = generate_table(config, lineage=True)
    con = events_connection(table)
    SqlProject.load().run(con, select=["agent_stats", "agent_task_stats"], vars={"as_of": AS_OF})
    events = table.to_pandas()
    events["task"] = events["task_type"].fillna(events["action_type"]).fillna("unspecified")
    events["ts"] = events["timestamp"].dt.tz_convert("UTC")
    events["complexity"] = events["context"].map(lambda c: json.loads(c)["complexity"])
    events["reward"] = np.select(
        [events.status == "success", events.status == "partial"], [1.0, events.quality_score.fillna(0.5)], 0.0
    )
    task_stats = con.sql("SELECT * FROM agent_task_stats").to_arrow_table().to_pandas()
    agent_stats = con.sql("SELECT * FROM agent_stats").to_arrow_table().to_pandas()
    return events, task_stats, agent_stats


def pandas_stats(events: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    g = events.groupby(keys)
    return pd.DataFrame(
        {
            "executions": g.size(),
            "successes": g["status"].apply(lambda s: (s == "success").sum()),
            "failures": g["status"].apply(lambda s: (s == "failure").sum()),
            "partials": g["status"].apply(lambda s: (s == "partial").sum()),
            "timeouts": g["status"].apply(lambda s: (s == "timeout").sum()),
            "reward_rate": g["reward"].mean(),
            "latency_avg_ms": g["latency_ms"].mean(),
            "llm_latency_avg_ms": g["llm_latency_ms"].mean(),
            "tokens_total": g["tokens_used"].sum(),
            "cost_total_usd": g["cost_usd"].sum(),
            "quality_mean": g["quality_score"].mean(),
            "latency_p50_ms": g["latency_ms"].quantile(0.5),
            "latency_p95_ms": g["latency_ms"].quantile(0.95),
        }
    )


def window_events(events, window):
    day, t_day = events.ts.dt.normalize(), pd.Timestamp(AS_OF).normalize()
    if window == "all":  # day-granular: whole days up to T's date
        return events[day <= t_day]
    if window == "7d":  # day-granular: the 7 whole days ending on T's date
        return events[(day <= t_day) & (day > t_day - pd.Timedelta(days=7))]
    return events[(events.ts <= AS_OF) & (events.ts > AS_OF - WINDOWS[window])]


@pytest.mark.parametrize("window", ["1h", "24h", "7d", "all"])
def test_task_level_stats_equal_pandas(run, window):
    events, task_stats, _ = run
    got = task_stats[(task_stats.window_name == window) & (task_stats.context_key == "*")]
    got = got.set_index(["task_type", "agent_name"]).sort_index()
    exp = pandas_stats(window_events(events, window), ["task", "agent_name"]).sort_index()
    exp.index.names = ["task_type", "agent_name"]
    assert list(got.index) == list(exp.index)
    for col in ("executions", "successes", "failures", "partials", "timeouts", "tokens_total"):
        assert (got[col].to_numpy() == exp[col].to_numpy()).all(), col
    for col in ("reward_rate", "latency_avg_ms", "llm_latency_avg_ms", "cost_total_usd", "quality_mean"):
        assert np.allclose(got[col], exp[col]), col
    assert np.allclose(got["success_rate"], exp["successes"] / exp["executions"])
    if window in ("7d", "all"):
        # Quantiles from the summed log-histograms: within the bucket width (2.5% at 20 buckets per e).
        rel = np.abs(got["latency_p50_ms"].to_numpy() / exp["latency_p50_ms"].to_numpy() - 1)
        assert rel.max() < 0.03
    else:
        exact = window_events(events, window).groupby(["task", "agent_name"])["latency_ms"]
        assert np.allclose(got["latency_p95_ms"], exact.quantile(0.95, interpolation="linear").sort_index())


def test_context_buckets_and_agent_level(run):
    events, task_stats, agent_stats = run
    got = task_stats[(task_stats.window_name == "24h") & (task_stats.context_key == "complexity")]
    got = got.set_index(["task_type", "agent_name", "context_value"]).sort_index()
    exp = pandas_stats(window_events(events, "24h"), ["task", "agent_name", "complexity"]).sort_index()
    assert (got["executions"].to_numpy() == exp["executions"].to_numpy()).all()
    assert np.allclose(got["quality_mean"], exp["quality_mean"])
    agents = agent_stats[(agent_stats.window_name == "all") & (agent_stats.context_key == "*")].set_index(
        "agent_name"
    )
    exp_agents = pandas_stats(window_events(events, "all"), ["agent_name"])
    assert (agents["executions"].sort_index().to_numpy() == exp_agents["executions"].to_numpy()).all()
    assert agents["executions"].sum() == len(window_events(events, "all"))
    assert "task_type" not in agent_stats.columns


def test_errors_trend_and_ema(run):
    events, task_stats, _ = run
    row = task_stats[(task_stats.window_name == "7d") & (task_stats.context_key == "*")].iloc[0]
    sel = window_events(events, "7d")
    sel = sel[(sel.task == row.task_type) & (sel.agent_name == row.agent_name)]
    failed = sel[sel.status.isin(["failure", "timeout"])]
    kinds = failed["error_type"].fillna(failed["status"].where(failed.status == "timeout", "unknown"))
    assert json.loads(row.failures_by_error_type) == kinds.value_counts().to_dict()
    t_day = pd.Timestamp(AS_OF).normalize()
    day = events.ts.dt.normalize()
    prev = events[(day <= t_day - pd.Timedelta(days=7)) & (day > t_day - pd.Timedelta(days=14))]
    prev = prev[(prev.task == row.task_type) & (prev.agent_name == row.agent_name)]
    assert row.prev_executions == len(prev)
    assert row.success_rate_trend == pytest.approx(row.success_rate - (prev.status == "success").mean())
    # EMA of daily success rates (alpha 0.3, oldest first, days up to T's date).
    days = window_events(events, "all")
    days = days[(days.task == row.task_type) & (days.agent_name == row.agent_name)]
    daily_rate = days.groupby(days.ts.dt.normalize())["status"].apply(lambda s: (s == "success").mean())
    assert row.ema_success_rate == pytest.approx(daily_rate.ewm(alpha=0.3, adjust=False).mean().iloc[-1])
