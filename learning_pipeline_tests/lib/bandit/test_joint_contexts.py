"""Joint context buckets: one naming rule in SQL and Python, any key order, hierarchical back-off by evidence,
and a simulated world where only the joint context finds the best agent."""

import itertools
import json
from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest

from learning_pipeline.lib.bandit import contexts
from learning_pipeline.lib.bandit.policy import RoutingPolicy
from learning_pipeline.lib.bandit.thompson import Recommender, compute_posteriors
from learning_pipeline.lib.learning.data import daily_from_cells, joint_cells
from learning_pipeline.lib.simulation import SimulationConfig, SimulationTruth
from learning_pipeline.lib.storage.sql_runner import SqlProject
from learning_pipeline_tests._learning_fixtures import daily_stats, events_connection
from learning_pipeline_tests.lib.bandit.test_thompson import END, simulated

KEYS = ["event_date", "task_type", "context_key", "context_value", "agent_name"]


@pytest.fixture(scope="module")
def joint_world():
    """4 task types x 12 (complexity, domain) cells x 4 agents, a specialist agent per cell; 60k events."""
    return simulated(task_types=4, agents=4, days=5, events_per_day=12_000, seed=3, joint_context_effect=2.5)


def test_the_macro_and_python_name_the_joint_bucket_alike_in_any_key_order():
    con = duckdb.connect()
    SqlProject.load().run(con, select=[])
    samples = [
        {"complexity": "high", "domain": "legal"},
        {"domain": "médical/β", "complexity": 'say "hi"', "tier": "gold"},
        {"domain": "a&b", "tier": "x"},
        {"complexity": "low"},
        {},
    ]
    for sample, keys in itertools.product(samples, itertools.permutations(["complexity", "domain", "tier"])):
        rows = con.execute(
            "SELECT unnest(context_buckets(?, ?::VARCHAR[]), recursive := true)",
            [json.dumps(sample), list(keys)],
        ).fetchall()
        joint = [r for r in rows if contexts.is_joint(r[0])]
        expected = contexts.joint_bucket(sample)
        assert joint == ([expected] if expected else [])
        assert sorted(r for r in rows if not contexts.is_joint(r[0])) == sorted([("*", "*"), *sample.items()])
        if expected:
            assert contexts.joint_parts(*expected) == sorted(sample.items())


def test_the_cycle_roll_up_equals_the_sql_model_whatever_the_key_order(joint_world):
    _, table = joint_world
    frames = [
        daily_stats(table, context_keys=list(keys))
        for keys in (("complexity", "domain"), ("domain", "complexity"))
    ]
    con = events_connection(table)
    for keys in (("complexity", "domain"), ("domain", "complexity")):
        cells = joint_cells(con, date(2025, 2, 1), END, keys, "graded")
        frames.append(daily_from_cells(cells, keys))
    frames = [
        f[frames[0].columns.intersection(frames[-1].columns)]  # the roll-up adds the reward evidence
        .assign(event_date=pd.to_datetime(f["event_date"]).dt.date)
        .sort_values(KEYS, ignore_index=True)
        for f in frames
    ]
    assert frames[0]["context_key"].eq("complexity&domain").sum() > 0
    for other in frames[1:]:
        assert other[KEYS].astype(str).equals(frames[0][KEYS].astype(str))
        for column in ("n_events", "successes", "failures", "partials", "timeouts", "partial_reward"):
            np.testing.assert_allclose(other[column].to_numpy(float), frames[0][column].to_numpy(float))


def test_the_simulator_joint_option_changes_nothing_when_off_and_the_best_agent_when_on(joint_world):
    truth, _ = joint_world
    base = dict(agents=4, task_types=4, truth_seed=3, end_date=END)
    additive = SimulationTruth(SimulationConfig(**base))
    assert np.array_equal(
        additive.success[0], SimulationTruth(SimulationConfig(**base, joint_context_effect=0.0)).success[0]
    )
    assert (
        additive.best_agents_by_context()["best_agent"]
        == additive.best_agents_by_context()["task_type"].map(additive.best_agents())
    ).all()
    best = truth.best_agents_by_context()
    assert len(best) == 4 * 3 * 4
    p = truth.success_probabilities()
    argmax = p.loc[p.groupby(["task_type", "complexity", "domain"])["success_prob"].idxmax()]
    merged = best.merge(argmax, on=["task_type", "complexity", "domain"])
    assert (merged["best_agent"] == merged["agent_name"]).all()
    np.testing.assert_allclose(merged["best_success_prob"], merged["success_prob"])
    # the task type alone no longer names the best agent of most cells; the oracle beats the task-level policy
    assert (best["best_agent"] != best["task_type"].map(truth.best_agents())).mean() > 0.5
    assert truth.oracle_value() > truth.policy_value(truth.best_agents()) + 0.03
    with pytest.raises(ValueError, match="joint_context_effect"):
        SimulationConfig(joint_context_effect=-1)


def test_joint_buckets_find_the_true_best_agent_of_95_percent_of_cells(joint_world):
    truth, table = joint_world
    post = compute_posteriors(daily_stats(table), n_samples=100)
    best = truth.best_agents_by_context()
    cells = best[["task_type", "complexity", "domain"]]

    def hits(posteriors: pd.DataFrame) -> float:
        rec = Recommender(posteriors)
        top = rec.agents[rec.mean[rec.resolve_batch(cells)].argmax(axis=1)]
        return float((top == best["best_agent"].to_numpy()).mean())

    assert hits(post) >= 0.95
    assert hits(post[~post["context_key"].map(contexts.is_joint)]) <= 0.6  # single keys cannot


def test_the_policy_backs_off_by_its_min_context_evidence(joint_world):
    _, table = joint_world
    post = compute_posteriors(daily_stats(table), n_samples=100)
    agents = tuple(sorted(post["agent_name"].unique()))
    request = pd.DataFrame([{"task_type": "task_000", "complexity": "high", "domain": "legal"}])
    joint_n = post.loc[
        post["context_key"].eq("complexity&domain")
        & post["context_value"].eq('["high","legal"]')
        & post["task_type"].eq("task_000"),
        "n_events",
    ].max()  # the bucket's best-measured agent
    for min_evidence, expected in ((joint_n, ("complexity&domain", '["high","legal"]')), (10**9, ("*", "*"))):
        policy = RoutingPolicy(post, agents, params={"min_context_evidence": min_evidence})
        rec = Recommender(
            post, agents=agents, context_keys=("complexity", "domain"), min_evidence=min_evidence
        )
        assert policy.evidence_rows(request)[0] == rec.group_row("task_000", *expected)
    default = Recommender(post, agents=agents, context_keys=("complexity", "domain"))  # its default evidence
    assert default.min_evidence == contexts.DEFAULT_MIN_EVIDENCE
    assert RoutingPolicy(post, agents).evidence_rows(request)[0] == default.resolve_batch(request)[0]
