"""Online evidence: the counts a decision sees, the Beta update, and the gate replaying a served stream."""

import numpy as np
import pandas as pd
import pytest

from learning_pipeline.lib.bandit import online
from learning_pipeline.lib.bandit.policy import RoutingPolicy, evaluate_candidate

AGENTS = ("alpha", "beta", "gamma")


def _posteriors() -> pd.DataFrame:
    rows = []
    for task, means in (("code", (0.7, 0.5, 0.3)), ("search", (0.4, 0.6, 0.5))):
        for agent, mean in zip(AGENTS, means, strict=True):
            for key, value in (("*", "*"), ("complexity", "high")):
                n = 40.0
                rows.append((task, key, value, agent, mean * n + 1, (1 - mean) * n + 1, n))
    frame = pd.DataFrame(
        rows, columns=["task_type", "context_key", "context_value", "agent_name", "alpha", "beta", "n_events"]
    )
    frame["mean"] = frame["alpha"] / (frame["alpha"] + frame["beta"])
    return frame


def _policy(epoch_seconds: float) -> RoutingPolicy:
    params = {online.PARAM: epoch_seconds, "cutoff": "2026-11-01"}
    return RoutingPolicy(_posteriors(), AGENTS, context_keys=("complexity",), params=params)


def _stream(n: int, seed: int) -> pd.DataFrame:
    """Outcomes over ten minutes of 2026-11-02, agent gamma suddenly the best for code tasks."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-11-02T10:00:00", tz="UTC")
    task = rng.choice(["code", "search"], n)
    agent = rng.choice(AGENTS, n)
    success = np.where((task == "code") & (agent == "gamma"), 0.95, 0.4)
    return pd.DataFrame(
        {
            "timestamp": start + pd.to_timedelta(np.sort(rng.uniform(0, 600, n)), unit="s"),
            "task_type": task,
            "complexity": rng.choice(["high", "low", None], n),
            "agent_name": agent,
            "reward": (rng.random(n) < success).astype(float),
        }
    )


def test_replay_counts_equal_a_direct_count_of_earlier_epochs_in_the_same_row():
    rng = np.random.default_rng(0)
    n, m, k = 400, 300, 3
    rows, agents = rng.integers(0, 5, n), rng.integers(-1, k, n)
    rewards, stamps = rng.random(n), rng.integers(0, 20, n)
    q_rows, q_epochs = rng.integers(0, 6, m), rng.integers(0, 22, m)
    s, f = online.replay_counts(rows, agents, rewards, stamps, q_rows, q_epochs, k)
    for i in range(m):
        seen = (rows == q_rows[i]) & (stamps < q_epochs[i]) & (agents >= 0)
        for a in range(k):
            assert s[i, a] == pytest.approx(rewards[seen & (agents == a)].sum())
            assert f[i, a] == pytest.approx((1 - rewards[seen & (agents == a)]).sum())


def test_folding_at_epoch_boundaries_gives_the_replayed_counts():
    rng = np.random.default_rng(1)
    n = 500
    rows, agents, rewards = rng.integers(0, 4, n), rng.integers(0, 3, n), rng.random(n)
    stamps = np.sort(rng.integers(0, 30, n))
    evidence = online.Evidence(4, 3)
    for epoch in range(31):  # outcomes arrive as they happen; decisions in each epoch see the folded counts
        evidence.add(*(x[stamps == epoch] for x in (rows, agents, rewards, stamps)))
        evidence.fold(epoch)
        s_live, f_live = evidence.counts(np.arange(4))
        s, f = online.replay_counts(rows, agents, rewards, stamps, np.arange(4), np.full(4, epoch), 3)
        np.testing.assert_allclose(s_live, s)
        np.testing.assert_allclose(f_live, f)


def test_posterior_policy_update_is_the_conjugate_beta_update():
    policy = _policy(5.0)
    request = pd.DataFrame({"task_type": ["code"], "complexity": ["high"]})
    s, f = np.array([[3.0, 0.0, 10.0]]), np.array([[1.0, 2.0, 0.0]])
    mean, sd = policy.beliefs(request, (s, f))
    alpha = np.array([0.7, 0.5, 0.3]) * 40 + 1
    beta = np.array([0.3, 0.5, 0.7]) * 40 + 1
    np.testing.assert_allclose(mean[0], (alpha + s[0]) / (alpha + beta + s[0] + f[0]))
    a, b = alpha + s[0], beta + f[0]
    np.testing.assert_allclose(sd[0], np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1))))
    frozen_mean, _ = policy.beliefs(request)
    np.testing.assert_allclose(frozen_mean[0], alpha / (alpha + beta))


def test_online_policy_learns_within_the_day_and_the_gate_replays_what_was_served():
    """A service loop (fold at each decision's epoch, decide, log the propensity) against the gate's replay
    of the same stream: identical probabilities for every decision, and the policy moved to gamma."""
    policy, stream = _policy(5.0), _stream(1500, seed=2)
    rng = np.random.default_rng(3)
    epochs = online.epochs(stream["timestamp"], 5.0)
    evidence = online.Evidence(*policy.evidence_shape)
    agent_pos = {a: i for i, a in enumerate(policy.agents)}
    served = np.zeros((len(stream), len(AGENTS)))
    chosen = []
    for i, event in enumerate(stream.itertuples(index=False)):
        evidence.fold(int(epochs[i]))
        request = pd.DataFrame([{"task_type": event.task_type, "complexity": event.complexity}])
        universe, probs, _ = policy.decide(request, evidence.counts(policy.evidence_rows(request)))
        assert universe == AGENTS
        served[i] = probs[0]
        chosen.append(AGENTS[rng.choice(3, p=probs[0])])
        evidence.add(
            policy.evidence_rows(request),
            np.array([agent_pos[event.agent_name]]),
            np.array([event.reward]),
            epochs[i : i + 1],
        )
    logged = stream.assign(
        selection_propensity=served[np.arange(len(stream)), stream["agent_name"].map(agent_pos)]
    )
    result = evaluate_candidate(policy, None, logged, keep_targets=True, n_bootstrap=50)
    np.testing.assert_allclose(result.target_probabilities["candidate"], served, atol=1e-12)
    code_high = (stream["task_type"] == "code") & (stream["complexity"] == "high")
    late = code_high & (np.arange(len(stream)) > 1000)
    assert served[late.to_numpy(), 2].mean() > 0.8  # gamma, worst on the training days, now dominant
    assert served[code_high.to_numpy(), 2][:5].mean() < 0.2
    frozen = evaluate_candidate(_policy(0.0), None, logged, keep_targets=True, n_bootstrap=50)
    assert frozen.target_probabilities["candidate"][late.to_numpy(), 2].max() < 0.2
