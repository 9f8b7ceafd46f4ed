"""The served top-k list replayed on logged events, against a simulation of how the API builds the list."""

import numpy as np
import pytest

from learning_pipeline.lib.bandit import ope


def _served_lists(probs: np.ndarray, k: int, draws: int, rng) -> np.ndarray:
    """(draws, n, m) membership of the API's list: first agent drawn from probs, the rest by probability."""
    n, m = probs.shape
    member = np.zeros((draws, n, m), dtype=bool)
    order = np.argsort(-probs, axis=1, kind="stable")
    for d in range(draws):
        first = np.minimum((rng.random((n, 1)) > probs.cumsum(axis=1)).sum(axis=1), m - 1)
        rest = order[order != first[:, None]].reshape(n, m - 1)[:, : k - 1]  # the others by probability
        member[d, np.arange(n), first] = True
        member[d, np.repeat(np.arange(n), rest.shape[1]), rest.ravel()] = True
    return member


@pytest.mark.parametrize("k", [1, 2, 3])
def test_top_k_inclusion_matches_a_simulation_of_the_served_lists(k):
    rng = np.random.default_rng(0)
    n, m = 40, 5
    probs = rng.dirichlet(np.ones(m), size=n)
    actions = rng.integers(0, m, size=n)
    rewards = (rng.random(n) < 0.6).astype(float)
    data = ope.LoggedData(tuple(f"a{i}" for i in range(m)), actions, rewards, np.full(n, 1.0 / m))
    got = ope.top_k_metrics(data, probs, k)
    member = _served_lists(probs, k, 4000, rng)
    assert member.sum(axis=2).min() == member.sum(axis=2).max() == k  # every list has k agents
    inclusion = member[:, np.arange(n), actions].mean(axis=0)  # (n,) frequency the acting agent is listed
    assert got[f"top{k}_hit_rate"] == pytest.approx(inclusion.mean(), abs=0.01)
    assert got[f"top{k}_replay"] == pytest.approx((inclusion * rewards).sum() / inclusion.sum(), abs=0.01)
    assert got[f"top{k}_success_recall"] == pytest.approx(inclusion[rewards == 1].mean(), abs=0.01)
    if k == 1:  # top-1 replay is the replay estimator
        replay = ope.evaluate_policies(data, {"p": probs}, n_bootstrap=0).value("p", "replay").value
        assert got["top1_replay"] == pytest.approx(replay)


def test_top_k_longer_than_the_agent_list_offers_everyone():
    probs = np.array([[0.7, 0.3], [0.1, 0.9]])
    data = ope.LoggedData(("a", "b"), np.array([1, 0]), np.array([1.0, 0.0]), np.full(2, np.nan))
    got = ope.top_k_metrics(data, probs, 5)
    assert got == {"top2_hit_rate": 1.0, "top2_replay": 0.5, "top2_success_recall": 1.0}
