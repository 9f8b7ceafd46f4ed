"""Online evidence: a served version keeps learning between cycles, and the gate replays exactly that.

A version scores each (request, agent) with mu, its trained score, backed by n = alpha + beta pseudo-events
(the request's resolved posterior row, `thompson.Recommender`). Outcomes observed after the version's
training cut-off update that belief as Beta evidence at the same resolved row:

    mean = (mu * n + s) / (n + s + f),    sd = sd of Beta(mu * n + s, (1 - mu) * n + f)

where s and f are the reward sum and its complement over the new outcomes of that agent that resolved to
that row (for a posterior-only version this is the exact conjugate update of its Beta posterior).

Timing is part of the policy: evidence takes effect in epochs of `epoch_seconds` (the version's param
`online_epoch_seconds`, 0 = frozen): a decision made in epoch e sees every outcome since the cut-off whose
timestamp lies in an epoch before e. The decision service folds outcomes at epoch boundaries; the gate
replays the held-out stream with the same rule (`replay_counts`), so what is evaluated is what is served.
An outcome that reaches the service after its epoch has passed counts from the next decision on: the only
way served and replayed evidence can differ, and the reason the epoch is seconds, not milliseconds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PARAM = "online_epoch_seconds"
DEFAULT_EPOCH_SECONDS = 5.0


def epochs(timestamps, epoch_seconds: float) -> np.ndarray:
    """(n,) epoch index of UTC timestamps (anything pandas reads as datetimes)."""
    stamps = pd.to_datetime(pd.Series(timestamps), utc=True)
    nanos = stamps.dt.as_unit("ns").astype("int64").to_numpy()
    return np.floor_divide(nanos, int(round(epoch_seconds * 1e9)))


def update(mean: np.ndarray, strength: np.ndarray, s: np.ndarray, f: np.ndarray):
    """(mean, sd) after adding s successes and f failures to beliefs mean backed by `strength` events."""
    alpha = mean * strength + s
    beta = (1.0 - mean) * strength + f
    total = alpha + beta
    return alpha / total, np.sqrt(alpha * beta / (total * total * (total + 1.0)))


def replay_counts(
    rows: np.ndarray,
    agents: np.ndarray,
    rewards: np.ndarray,
    outcome_epochs: np.ndarray,
    query_rows: np.ndarray,
    query_epochs: np.ndarray,
    n_agents: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(m, K) reward sums s and complements f seen by m decisions.

    Outcome j (resolved row rows[j], agent index agents[j] in [0, K) or -1 for an agent the policy does
    not know, reward in [0, 1], epoch outcome_epochs[j]) counts for decision i when rows[j] == query_rows[i]
    and outcome_epochs[j] < query_epochs[i]. Vectorized: outcomes sorted by (row, epoch), cumulative sums,
    two binary searches per decision.
    """
    keep = agents >= 0
    rows, agents, rewards, outcome_epochs = rows[keep], agents[keep], rewards[keep], outcome_epochs[keep]
    m = len(query_rows)
    if not len(rows):
        return np.zeros((m, n_agents)), np.zeros((m, n_agents))
    low = min(outcome_epochs.min(), query_epochs.min() if m else 0)
    span = int(max(outcome_epochs.max(), query_epochs.max() if m else 0) - low) + 2
    key = rows.astype(np.int64) * span + (outcome_epochs - low)
    order = np.argsort(key, kind="stable")
    key = key[order]
    gained = np.zeros((len(order) + 1, n_agents))
    lost = np.zeros((len(order) + 1, n_agents))
    np.add.at(gained, (np.arange(1, len(order) + 1), agents[order]), rewards[order])
    np.add.at(lost, (np.arange(1, len(order) + 1), agents[order]), 1.0 - rewards[order])
    gained, lost = gained.cumsum(axis=0), lost.cumsum(axis=0)
    row_start = np.searchsorted(key, query_rows.astype(np.int64) * span, side="left")
    upto = np.searchsorted(key, query_rows.astype(np.int64) * span + (query_epochs - low), side="left")
    return gained[upto] - gained[row_start], lost[upto] - lost[row_start]


class Evidence:
    """A served version's online evidence: outcomes waiting for their epoch to pass, and folded counts.

    rows/agents come from the version's policy (`RoutingPolicy.evidence_rows`); `counts(rows, epoch)` gives
    the (m, K) s and f that decisions in `epoch` see. `generation` changes whenever the counts do.
    """

    def __init__(self, n_rows: int, n_agents: int):
        self.s = np.zeros((n_rows, n_agents))
        self.f = np.zeros((n_rows, n_agents))
        self.generation = 0
        self.folded = 0
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, rows: np.ndarray, agents: np.ndarray, rewards: np.ndarray, epochs_: np.ndarray) -> None:
        keep = agents >= 0
        if keep.any():
            self._pending.append((rows[keep], agents[keep], rewards[keep], epochs_[keep]))

    def fold(self, epoch: int) -> None:
        """Fold every pending outcome from an epoch before `epoch`."""
        if not self._pending:
            return
        rows, agents, rewards, stamps = (np.concatenate(part) for part in zip(*self._pending, strict=True))
        due = stamps < epoch
        if not due.any():
            return
        np.add.at(self.s, (rows[due], agents[due]), rewards[due])
        np.add.at(self.f, (rows[due], agents[due]), 1.0 - rewards[due])
        self.folded += int(due.sum())
        self.generation += 1
        wait = ~due
        self._pending = [(rows[wait], agents[wait], rewards[wait], stamps[wait])] if wait.any() else []

    def counts(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.s[rows], self.f[rows]
