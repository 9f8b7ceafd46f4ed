"""Selection probabilities of a routing policy: Thompson sampling with an exploration floor, deterministic.

For one request with eligible agents A (|A| = K), each agent a has a score mu_a (the policy's predicted
success) and an uncertainty sigma_a (the standard deviation of its Beta posterior). The policy selects

    pi(a | x) = (1 - epsilon) * P_ts(a | x) + epsilon / K          for a in A, 0 otherwise

where P_ts(a | x) = P(a = argmax_b theta_b), theta_b ~ Normal(mu_b, sigma_b^2), is Thompson sampling's
selection probability (Thompson 1933; Chapelle & Li 2011) under a normal approximation of each posterior,
and epsilon (the exploration floor) keeps every eligible agent's probability above 0, so the logged
decisions support off-policy evaluation of any other policy (IPS needs pi_logging(a | x) > 0).

P_ts is estimated with common random numbers: agent a always uses the same N standard-normal draws,
seeded by its name. The result depends only on the request's eligible agents and their (mu, sigma), not
on the order of the agents or on what else is in the batch, so the gate, the shadow comparison and the
API compute identical probabilities for the same request and version.
"""

from __future__ import annotations

import zlib
from functools import lru_cache

import numpy as np

N_DRAWS = 1024
DEFAULT_EXPLORATION = 0.05
_CHUNK_ROWS = 256  # rows per vectorized block: bounds memory at _CHUNK_ROWS x N_DRAWS x K


@lru_cache(maxsize=4096)
def _agent_draws(agent: str) -> np.ndarray:
    """(N_DRAWS,) standard-normal draws owned by one agent name (stable across processes)."""
    return np.random.default_rng(zlib.crc32(agent.encode("utf-8"))).standard_normal(N_DRAWS)


def common_draws(agents: tuple[str, ...]) -> np.ndarray:
    """(N_DRAWS, K) draws, column j belonging to agents[j]."""
    return np.stack([_agent_draws(str(a)) for a in agents], axis=1) if agents else np.zeros((N_DRAWS, 0))


def beta_sd(alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Standard deviation of Beta(alpha, beta), elementwise."""
    total = alpha + beta
    return np.sqrt(alpha * beta / (total * total * (total + 1.0)))


def selection_probabilities(
    mean: np.ndarray,
    sd: np.ndarray,
    eligible: np.ndarray,
    agents: tuple[str, ...],
    exploration: float = DEFAULT_EXPLORATION,
) -> np.ndarray:
    """pi(a | x) for m requests over K agents.

    mean, sd: (m, K) score and uncertainty per request and agent; eligible: (m, K) bool, at least one True
    per row (a row with none is treated as all eligible); agents: the K names (they pick the draws).
    Returns (m, K) probabilities, each row summing to 1, > 0 exactly on the eligible agents.
    """
    if not 0.0 < exploration <= 1.0:
        raise ValueError(f"exploration must be in (0, 1], got {exploration}")
    mean, sd = np.asarray(mean, float), np.asarray(sd, float)
    eligible = np.asarray(eligible, bool).copy()
    m, k = mean.shape
    if sd.shape != (m, k) or eligible.shape != (m, k) or len(agents) != k:
        raise ValueError(
            f"shapes differ: mean {mean.shape}, sd {sd.shape}, eligible {eligible.shape}, {k} agents"
        )
    eligible[~eligible.any(axis=1)] = True
    draws = common_draws(tuple(agents))  # (N, K)
    p_ts = np.zeros((m, k))
    for start in range(0, m, _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, m)
        theta = mean[start:stop, None, :] + sd[start:stop, None, :] * draws[None]  # (rows, N, K)
        theta = np.where(eligible[start:stop, None, :], theta, -np.inf)
        winner = theta.argmax(axis=2)  # (rows, N)
        rows = np.arange(stop - start)[:, None] * k
        counts = np.bincount((rows + winner).ravel(), minlength=(stop - start) * k)
        p_ts[start:stop] = counts.reshape(stop - start, k) / N_DRAWS
    uniform = eligible / eligible.sum(axis=1, keepdims=True)
    return (1.0 - exploration) * p_ts + exploration * uniform


def sample_choice(probabilities: np.ndarray, rng: np.random.Generator) -> int:
    """Index drawn from one row of probabilities."""
    cumulative = np.cumsum(probabilities)
    return int(
        min(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"), len(cumulative) - 1)
    )
