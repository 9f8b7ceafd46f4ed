"""Off-policy estimators: exact cases, input errors, and agreement with the simulator's true policy values."""

import numpy as np
import pandas as pd
import pytest

from learning_pipeline.lib.bandit import ope
from learning_pipeline.lib.bandit.policy import evaluate_candidate
from learning_pipeline.lib.learning.cycle import CycleConfig, Window, train_candidate
from learning_pipeline.lib.learning.data import held_out_events
from learning_pipeline.lib.storage.warehouse import lake_connection
from learning_pipeline_tests._models_fixtures import simulated_lake


def _bandit(n=20_000, seed=0):
    rng = np.random.default_rng(seed)
    true = np.array([0.5, 0.6, 0.75, 0.4])
    logging = np.array([0.4, 0.3, 0.2, 0.1])
    actions = rng.choice(4, size=n, p=logging)
    rewards = (rng.random(n) < true[actions]).astype(float)
    return ope.LoggedData(("a", "b", "c", "d"), actions, rewards, logging[actions]), true


def test_estimators_cover_true_values_of_deterministic_and_stochastic_policies():
    data, true = _bandit()
    n = data.n
    best = ope.one_hot(np.full(n, 2), 4)
    stochastic = np.tile([0.1, 0.2, 0.6, 0.1], (n, 1))
    reward_model = np.tile(true + 0.05, (n, 1))  # a slightly biased model: DR stays unbiased
    # several intervals are checked at once: 99% intervals keep the family-wise miss rate small
    ev = ope.evaluate_policies(
        data, {"best": best, "mix": stochastic}, reward_model, reference="mix", seed=3, confidence=0.99
    )
    truths = {"best": true[2], "mix": float(stochastic[0] @ true)}
    for policy, value in truths.items():
        for name in ("ips", "snips", "dr"):
            est = ev.estimates[policy][name]
            assert est.ci_low <= value <= est.ci_high, (policy, name, est)
    diff = ev.differences["best"]["dr"]
    assert diff.ci_low <= truths["best"] - truths["mix"] <= diff.ci_high
    # the direct method inherits the model's bias and says so in its label
    assert ev.estimates["best"]["dm"].value == pytest.approx(true[2] + 0.05)
    assert "model-based" in ev.estimates["best"]["dm"].label
    assert ev.gate_estimator == "dr"


def test_replay_without_propensities_is_labelled_and_exact_for_uniform_logging():
    rng = np.random.default_rng(1)
    n, true = 40_000, np.array([0.3, 0.7])
    actions = rng.integers(0, 2, n)
    rewards = (rng.random(n) < true[actions]).astype(float)
    data = ope.LoggedData.from_columns(np.array(["x", "y"])[actions], rewards, None)
    ev = ope.evaluate_policies(data, {"y": ope.one_hot(np.ones(n, int), 2)}, n_bootstrap=300)
    est = ev.estimates["y"]["replay"]
    assert ev.gate_estimator == "replay" and "ips" not in ev.estimates["y"]
    assert est.n == int((actions == 1).sum())
    assert est.ci_low <= 0.7 <= est.ci_high
    assert "no propensities" in est.label


def test_bootstrap_is_reproducible_and_block_bootstrap_matches_exact_width():
    data, true = _bandit(n=30_000)
    probs = {"p": ope.one_hot(np.full(data.n, 1), 4)}
    a = ope.evaluate_policies(data, probs, seed=7, max_groups=100_000)
    b = ope.evaluate_policies(data, probs, seed=7, max_groups=100_000)
    blocks = ope.evaluate_policies(data, probs, seed=7, max_groups=2_000)
    ea, eb, ec = a.estimates["p"]["snips"], b.estimates["p"]["snips"], blocks.estimates["p"]["snips"]
    assert (ea.ci_low, ea.ci_high) == (eb.ci_low, eb.ci_high)
    assert ec.value == pytest.approx(ea.value)
    assert (ec.ci_high - ec.ci_low) == pytest.approx(ea.ci_high - ea.ci_low, rel=0.25)


def test_bad_inputs_raise_clear_errors():
    data, _ = _bandit(n=100)
    with pytest.raises(ValueError, match="shape"):
        ope.evaluate_policies(data, {"p": np.ones((100, 3)) / 3})
    with pytest.raises(ValueError, match="distribution"):
        ope.evaluate_policies(data, {"p": np.ones((100, 4))})
    with pytest.raises(ValueError, match="propensities"):
        ope.LoggedData(("a",), np.zeros(2, int), np.zeros(2), np.array([0.0, 0.5]))
    with pytest.raises(ValueError, match="missing from the agent list"):
        ope.LoggedData.from_columns(["a", "zz"], [1.0, 0.0], agents=("a",))


def test_calibration_scores():
    data = ope.LoggedData(("a", "b"), np.array([0, 1, 0, 1]), np.array([1.0, 0.0, 1.0, 1.0]), np.full(4, 0.5))
    model = np.tile([0.75, 0.5], (4, 1))
    cal = ope.calibration(model, data)
    assert cal["brier"] == pytest.approx((0.0625 + 0.25 + 0.0625 + 0.25) / 4)
    assert cal["log_loss"] == pytest.approx(-(2 * np.log(0.75) + 2 * np.log(0.5)) / 4)


def test_off_policy_estimates_agree_with_the_simulators_true_policy_values(tmp_path):
    paths, cfg, truth = simulated_lake(
        tmp_path / "data", days=10, events_per_day=2500, seed=11, end_date="2025-03-10", propensities=True
    )
    config = CycleConfig(
        window_days=8, eval_days=2, contextual_model=False, reward_rule="success", n_bootstrap=400
    )
    window = Window.for_partition("2025-03-10", config)
    with lake_connection(paths) as con:
        candidate = train_candidate(con, window, config).policy
        events, candidates = held_out_events(
            con, window.cutoff, window.eval_end, config.context_keys, "success"
        )
    result = evaluate_candidate(
        candidate, None, events, candidate_agents=candidates, n_bootstrap=400, seed=5, confidence=0.99
    )

    grid = truth.success_probabilities()[["task_type", "complexity", "domain"]].drop_duplicates()
    # the candidate selects with probabilities (Thompson sampling + exploration floor): its true value is
    # the probability-weighted success over the agents it could pick (the logged candidate sets: all agents)
    requests = grid.assign(candidate_agents=[list(cfg.agents)] * len(grid)).reset_index(drop=True)
    universe, probs, _ = candidate.decide(requests)
    decisions = pd.DataFrame(
        {
            "task_type": np.repeat(requests["task_type"].to_numpy(), len(universe)),
            "complexity": np.repeat(requests["complexity"].to_numpy(), len(universe)),
            "domain": np.repeat(requests["domain"].to_numpy(), len(universe)),
            "agent_name": np.tile(np.array(universe, dtype=object), len(requests)),
            "probability": probs.ravel(),
        }
    )
    true_candidate = truth.policy_value(decisions)
    true_uniform = truth.policy_value({t: {a: 1.0 for a in cfg.agents} for t in cfg.task_types})
    ev = result.evaluation
    assert ev.propensity_coverage == 1.0 and ev.gate_estimator == "dr"
    for name in ("ips", "snips", "dr"):
        cand, unif = ev.estimates["candidate"][name], ev.estimates["uniform_random"][name]
        assert cand.ci_low <= true_candidate <= cand.ci_high, (name, cand, true_candidate)
        assert unif.ci_low <= true_uniform <= unif.ci_high, (name, unif, true_uniform)
    diff = ev.differences["candidate"]["dr"]
    assert diff.ci_low <= true_candidate - true_uniform <= diff.ci_high
    # the learned policy is close to the oracle and far above uniform routing
    assert true_candidate > true_uniform + 0.1
    assert set(result.calibration["candidate"]) == {"brier", "log_loss"}
