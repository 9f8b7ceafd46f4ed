"""The off-policy estimators check their inputs on entry (shapes and ranges of the docstrings)."""

import numpy as np
import pytest

from learning_pipeline.lib.bandit.ope import (
    LoggedData,
    brier_score,
    calibration,
    evaluate_policies,
    log_loss,
    one_hot,
    uniform_policy,
)


def data() -> LoggedData:
    return LoggedData(
        ("a", "b"), np.array([0, 1, 1]), np.array([1.0, 0.0, 0.5]), np.array([0.5, 0.5, np.nan])
    )


def test_logged_data_shapes_and_types():
    with pytest.raises(ValueError, match="integer"):
        LoggedData(("a", "b"), np.array([0.0, 1.0]), np.ones(2), np.full(2, np.nan))
    with pytest.raises(ValueError, match="1-D"):
        LoggedData(("a", "b"), np.zeros((2, 1), int), np.ones(2), np.full(2, np.nan))


def test_evaluation_arguments():
    probs = {"p": one_hot(np.array([0, 1, 0]), 2)}
    assert evaluate_policies(data(), probs, n_bootstrap=10).value("p", "replay").n == 2
    with pytest.raises(ValueError, match="confidence"):
        evaluate_policies(data(), probs, confidence=95)
    with pytest.raises(ValueError, match="max_groups"):
        evaluate_policies(data(), probs, max_groups=0)


def test_helpers_reject_wrong_shapes_and_indices():
    with pytest.raises(ValueError, match="within"):
        one_hot(np.array([0, -1]), 2)  # would silently pick the last agent
    with pytest.raises(ValueError, match=r"\(n, k\)"):
        uniform_policy(np.ones(3, bool))
    with pytest.raises(ValueError, match="shape"):
        brier_score(np.ones((3, 1)), np.ones(3))  # would broadcast to a (3, 3) error
    with pytest.raises(ValueError, match="shape"):
        log_loss(np.ones(2), np.ones(3))
    with pytest.raises(ValueError, match="reward model"):
        calibration(np.ones((3, 3)), data())
    assert set(calibration(np.full((3, 2), 0.5), data())) == {"brier", "log_loss"}
