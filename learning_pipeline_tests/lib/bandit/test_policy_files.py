"""A saved policy's pickled model is written atomically with its SHA-256, and a loader given the registered
digest refuses a changed file before unpickling it (whoever can write the artifact store cannot run code)."""

import hashlib
import json
import os
import pickle

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from learning_pipeline.lib.bandit.policy import MODEL_FILE, RoutingPolicy


class _Payload:
    """Unpickling this creates a file: proof that a pickle was loaded."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def _policy() -> RoutingPolicy:
    posteriors = pd.DataFrame(
        {
            "task_type": ["t", "t"],
            "context_key": ["*", "*"],
            "context_value": ["*", "*"],
            "agent_name": ["a", "b"],
            "alpha": [3.0, 1.0],
            "beta": [1.0, 3.0],
            "mean": [0.75, 0.25],
            "n_events": [2, 2],
        }
    )
    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    return RoutingPolicy(posteriors, ("a", "b"), model=model, model_kind="logistic_regression")


def test_the_model_digest_is_recorded_and_checked(tmp_path):
    directory = _policy().save(tmp_path / "policy")
    digest = json.loads((directory / "policy.json").read_text())["model_sha256"]
    assert digest == hashlib.sha256((directory / MODEL_FILE).read_bytes()).hexdigest()
    assert not list(directory.glob(".*"))  # no temporary file left beside it
    loaded = RoutingPolicy.load(directory, expected_model_sha256=digest)
    assert loaded.model.predict([[1.0]]).tolist() == [1]

    marker = tmp_path / "unpickled"
    (directory / MODEL_FILE).write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(ValueError, match="refusing to load a model file that was changed"):
        RoutingPolicy.load(directory, expected_model_sha256=digest)
    assert not marker.exists()  # refused before unpickling
