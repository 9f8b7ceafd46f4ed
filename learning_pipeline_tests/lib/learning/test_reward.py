"""The configurable reward (dbt_like_sql/macros/reward.sql): every reader of it against an independent Python
computation on a table of edge cases, per-task weights, the Beta evidence it gives, and cost-aware routing on a
simulated world where the most successful agent is the most expensive."""

from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest

from learning_pipeline.lib.bandit import thompson
from learning_pipeline.lib.learning.cycle import CycleConfig, Window, train_candidate
from learning_pipeline.lib.learning.data import (
    daily_from_cells,
    held_out_events,
    joint_cells,
    reward_evidence,
    reward_vars,
    rewards,
)
from learning_pipeline.lib.storage.sql_runner import SqlProject
from learning_pipeline.lib.storage.warehouse import lake_connection
from learning_pipeline.lib.training.training_data import build_routing_pairs
from learning_pipeline_tests._models_fixtures import simulated_lake

DAY = date(2025, 3, 1)
KEYS = ("complexity",)
# status, quality_score, cost_usd, latency_ms, task_type
EDGE_CASES = [
    ("success", 0.9, 0.10, 2000.0, "analysis"),  # both penalties
    ("success", None, None, None, "analysis"),  # missing cost and latency: no penalty
    ("success", None, 0.05, None, "code_review"),  # per-task cost weight, default latency weight
    ("success", None, None, 1500.0, "code_review"),
    ("partial", None, None, None, "analysis"),  # partial without quality: 0.5
    ("partial", 0.8, 0.02, 100.0, "analysis"),
    ("partial", 0.3, 1.0, None, "analysis"),  # clipped at 0
    ("success", None, 5.0, 10_000.0, "code_review"),  # clipped at 0
    ("failure", 0.1, 0.01, 300.0, "analysis"),
    ("timeout", None, 0.2, 60_000.0, None),  # no task type: 'unspecified' takes the default row
    ("partial", 1.0, 0.0, 0.0, "planning"),
]
WEIGHTS = {"*": {"cost": 2.0, "latency": 0.05}, "code_review": {"cost": 6.0}, "planning": {"latency": 0.0}}


def expected_reward(status, quality, cost, latency, task_type, rule="graded", weights=None):
    """The rule written out in Python, independently of the SQL."""
    weights = weights or {}
    if status == "success":
        base = 1.0
    elif status == "partial" and rule == "graded":
        base = 0.5 if quality is None else quality
    else:
        base = 0.0
    default = weights.get("*", {})
    row = weights.get(task_type or "unspecified", {})
    w_cost = row.get("cost", default.get("cost", 0.0))
    w_latency = row.get("latency", default.get("latency", 0.0))
    value = base - w_cost * (cost or 0.0) - w_latency * (latency or 0.0) / 1000.0
    return min(1.0, max(0.0, value))


def edge_frame() -> pd.DataFrame:
    frame = pd.DataFrame(
        EDGE_CASES, columns=["status", "quality_score", "cost_usd", "latency_ms", "task_type"]
    )
    n = len(frame)
    return frame.assign(
        event_id=[f"e{i}" for i in range(n)],
        agent_name=[f"agent_{i % 3}" for i in range(n)],
        action_type=None,
        duration_ms=None,
        llm_latency_ms=None,
        tokens_used=None,
        error_type=None,
        context="{}",
        event_date=DAY,
        timestamp=pd.Timestamp(DAY, tz="UTC"),
        decision_id=None,
        selection_propensity=None,
        candidate_agents=None,
    )


def edge_connection() -> duckdb.DuckDBPyConnection:
    """An in-memory `outcome_events` holding the edge cases, typed as the lake types them."""
    con = duckdb.connect()
    con.register("edge", edge_frame())
    con.execute(
        """CREATE TABLE outcome_events AS SELECT * REPLACE (
               quality_score::DOUBLE AS quality_score, cost_usd::DOUBLE AS cost_usd,
               latency_ms::DOUBLE AS latency_ms, duration_ms::DOUBLE AS duration_ms,
               action_type::VARCHAR AS action_type, decision_id::VARCHAR AS decision_id,
               selection_propensity::DOUBLE AS selection_propensity,
               candidate_agents::VARCHAR[] AS candidate_agents)
           FROM edge"""
    )
    return con


@pytest.mark.parametrize("rule", ["graded", "success"])
@pytest.mark.parametrize("weights", [None, WEIGHTS], ids=["no-weights", "weights"])
def test_every_reader_of_the_rule_agrees_with_python_on_edge_cases(rule, weights):
    want = np.array([expected_reward(*case, rule=rule, weights=weights) for case in EDGE_CASES])
    # the decision service's path
    np.testing.assert_allclose(rewards(edge_frame(), rule, weights), want, rtol=0, atol=1e-12)
    con = edge_connection()
    # the staging model (posteriors' daily aggregates, routing pairs)
    SqlProject.load().run(con, select=["stg_outcome_events"], vars=reward_vars(rule, weights))
    staged = con.execute(
        "SELECT reward, reward_base, cost_penalty, latency_penalty FROM stg_outcome_events ORDER BY event_id"
    ).df()
    order = np.argsort([f"e{i}" for i in range(len(EDGE_CASES))])
    np.testing.assert_allclose(staged["reward"], want[order], rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        staged["reward"],
        (staged["reward_base"] - staged["cost_penalty"] - staged["latency_penalty"]).clip(0, 1),
        atol=1e-12,
    )
    # the learning cycle: OPE's held-out events and the training cells
    events, _ = held_out_events(con, DAY, DAY, KEYS, rule, weights)
    np.testing.assert_allclose(np.sort(events["reward"]), np.sort(want), rtol=0, atol=1e-12)
    cells = joint_cells(con, DAY, DAY, KEYS, rule, weights)
    assert cells["reward_sum"].sum() == pytest.approx(want.sum(), abs=1e-12)


def test_zero_weights_reproduce_the_base_rule_exactly():
    frame = edge_frame()
    base = rewards(frame, "graded")
    assert rewards(frame, "graded", {"*": {"cost": 0.0, "latency": 0.0}}).tolist() == base.tolist()
    today = [
        1.0 if s == "success" else (0.5 if q is None else q) if s == "partial" else 0.0
        for s, q, *_ in EDGE_CASES
    ]
    assert base.tolist() == today


def test_per_task_rows_override_the_default_row_penalty_by_penalty():
    v = reward_vars("graded", WEIGHTS)
    rows = dict(
        zip(
            v["reward_task_types"],
            zip(v["reward_cost_weights"], v["reward_latency_weights"], strict=True),
            strict=True,
        )
    )
    assert rows == {"*": (2.0, 0.05), "code_review": (6.0, 0.05), "planning": (2.0, 0.0)}
    frame = pd.DataFrame(
        {
            "status": ["success"] * 3,
            "cost_usd": [0.1] * 3,
            "latency_ms": [1000.0] * 3,
            "task_type": ["code_review", "planning", "other"],
        }
    )
    np.testing.assert_allclose(rewards(frame, "graded", WEIGHTS), [1 - 0.6 - 0.05, 1 - 0.2, 1 - 0.2 - 0.05])


@pytest.mark.parametrize(
    "weights", [{"*": {"cost": -1.0}}, {"x": {"tokens": 1.0}}, {"*": {"latency": float("nan")}}]
)
def test_bad_weights_are_refused(weights):
    with pytest.raises(ValueError):
        reward_vars("graded", weights)
    with pytest.raises(ValueError):
        CycleConfig(reward_weights=weights)


def test_posterior_evidence_is_the_reward_sum():
    """alpha - alpha0 is the reward sum and alpha + beta - alpha0 - beta0 the events, with penalized
    successes counted as partial credit."""
    con = edge_connection()
    cells = joint_cells(con, DAY, DAY, KEYS, "graded", WEIGHTS)
    daily = daily_from_cells(cells, KEYS)
    post = thompson.compute_posteriors(reward_evidence(daily), alpha0=1.0, beta0=1.0, n_samples=10)
    broad = post[(post["task_type"] == "*") & (post["context_key"] == "*")].set_index("agent_name")
    frame = edge_frame()
    frame["reward"] = [expected_reward(*case, weights=WEIGHTS) for case in EDGE_CASES]
    by_agent = frame.groupby("agent_name")["reward"].agg(["sum", "count"])
    np.testing.assert_allclose(broad.loc[by_agent.index, "alpha"] - 1.0, by_agent["sum"], atol=1e-12)
    np.testing.assert_allclose(
        broad.loc[by_agent.index, "alpha"] + broad.loc[by_agent.index, "beta"] - 2.0, by_agent["count"]
    )
    # without weights nothing moves: the evidence is the status counts
    plain = daily_from_cells(joint_cells(con, DAY, DAY, KEYS, "graded"), KEYS)
    assert reward_evidence(plain).equals(plain)


@pytest.fixture(scope="module")
def tradeoff_world(tmp_path_factory):
    """One task type, three agents; the most successful is the dearest (cost_tradeoff)."""
    world = dict(agents=("a1", "a2", "a3"), task_types=("analysis",), cost_tradeoff=True, gap=0.1)
    root = tmp_path_factory.mktemp("reward") / "data"
    paths, _, truth = simulated_lake(
        root, days=6, events_per_day=3000, seed=1, end_date="2025-02-06", **world
    )
    success = truth.success[0].mean(axis=(1, 2, 3))
    best = int(np.argmax(success))
    assert truth.agent_cost_usd[best] == truth.agent_cost_usd.max()  # the most successful is the dearest
    # with 2 reward units per USD the expected reward (success share minus 2 x mean cost) favours another agent
    cost_aware = int(np.argmax(success - 2.0 * truth.agent_cost_usd))
    assert cost_aware != best
    return paths, truth.config.agents[best], truth.config.agents[cost_aware]


def test_cost_aware_routing_prefers_the_cheaper_agent_only_when_cost_weighs(tradeoff_world):
    paths, best, cost_aware = tradeoff_world
    request = pd.DataFrame({"task_type": ["analysis"], "complexity": [None], "domain": [None]})
    chosen = {}
    for weight in (0.0, 2.0):
        config = CycleConfig(window_days=5, contextual_model=False, reward_weights={"*": {"cost": weight}})
        with lake_connection(paths) as con:
            trained = train_candidate(con, Window.for_partition("2025-02-06", config), config)
        chosen[weight] = trained.policy.recommend(request, top_k=1)["agent_name"].iloc[0]
        components = trained.policy.params["reward_components"]
        assert components["mean_reward"] <= components["mean_base"]
        assert (components["mean_cost_penalty"] > 0) == (weight > 0)
    assert chosen == {0.0: best, 2.0: cost_aware}


def test_routing_pairs_rank_by_the_reward_and_report_cost(tradeoff_world):
    paths, best, cost_aware = tradeoff_world
    chosen = {}
    for weight in (0.0, 2.0):
        result = build_routing_pairs(paths, reward=reward_vars("graded", {"*": {"cost": weight}}))
        top = [row for row in result.best if row["complexity"] == "*"]
        assert len(top) == 1 and top[0]["cost_mean_usd"] > 0
        chosen[weight] = top[0]["agent_name"]
    assert chosen == {0.0: best, 2.0: cost_aware}
