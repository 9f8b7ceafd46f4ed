"""Beta-Bernoulli Thompson sampling over agents, from counted outcomes.

Model. Each (task_type, context bucket, agent) has an unknown success probability theta with a
Beta(alpha0, beta0) prior. Outcomes are Bernoulli(theta), so the posterior is again a Beta (conjugacy):

    theta | data ~ Beta(alpha0 + S, beta0 + F)

with S and F the (fractional, decayed) counts below. The table reports the posterior mean
alpha / (alpha + beta), the equal-tailed credible interval [ppf(tail), ppf(1 - tail)] and P(best).
Thompson sampling (Thompson 1933; Chapelle & Li 2011) picks an agent by drawing one theta per agent from
its posterior and taking the largest; `Recommender` does that (mode="thompson") or ranks by the mean.

Outcome rule (one unit of evidence per event):
    success          -> alpha += 1
    failure, timeout -> beta  += 1
    partial          -> alpha += q, beta += 1 - q, with q = quality_score (0.5 when missing)
so, without decay, alpha + beta - alpha0 - beta0 == n_events for every row. A partial outcome is a reward
q in [0, 1]; the fractional update is the expected update of the Bernoulli trial Agrawal & Goyal (2012)
use to run Beta-Bernoulli Thompson sampling on rewards in [0, 1].

Decay (optional): evidence from a day `age` days before the reference day weighs factor ** age, with
factor = 0.5 ** (1 / half_life_days) (or given directly): discounted Thompson sampling (Raj & Kalyani
2017), discounting per whole UTC day (the daily aggregates' grain) and never the prior. Today's events
weigh 1.

Levels of the posterior table (`POSTERIOR_COLUMNS`):
    (task_type, '*', '*', agent)            the task-level posterior
    (task_type, key, value, agent)          a context bucket, e.g. ('analysis', 'complexity', 'high')
    (task_type, 'complexity&domain', '["high","legal"]', agent)   a joint context bucket
    ('*', ..., agent)                       all task types pooled: the global fallback for unknown task types
The buckets are those of the SQL macro `context_buckets` (see `contexts`). P(best) is computed within each
(task_type, context_key, context_value) group from posterior samples.

Recommendations (`Recommender`, `recommend`, `recommend_batch`, in `recommender` and re-exported here)
resolve a request to the most specific posterior with enough evidence: joint bucket -> single keys ->
task type -> pooled -> prior.

Shapes in the docstrings: n rows of a table, g (task_type, context_key, context_value) groups,
k candidate agents, m requests.

References
----------
- William R. Thompson. "On the Likelihood that One Unknown Probability Exceeds Another in View of the
  Evidence of Two Samples." Biometrika 25(3/4), 1933.
- Olivier Chapelle and Lihong Li. "An Empirical Evaluation of Thompson Sampling." NeurIPS, 2011.
- Shipra Agrawal and Navin Goyal. "Analysis of Thompson Sampling for the Multi-armed Bandit Problem."
  COLT, 2012.
- Steven L. Scott. "A Modern Bayesian Look at the Multi-armed Bandit." Applied Stochastic Models in
  Business and Industry 26(6), 2010 (P(best) from posterior draws).
- Vishnu Raj and Sheetal Kalyani. "Taming Non-stationary Bandits: A Bayesian Approach."
  arXiv:1707.09727, 2017 (discounted Thompson sampling).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from learning_pipeline.lib.bandit.contexts import ALL  # noqa: F401 (re-exported: thompson.ALL)
from learning_pipeline.lib.bandit.recommender import (  # noqa: F401 (re-exported: the public names)
    BatchRecommendations,
    Recommender,
    recommend,
    recommend_batch,
)

KEY_COLUMNS = ["task_type", "context_key", "context_value", "agent_name"]
POSTERIOR_COLUMNS = [
    "task_type",
    "context_key",
    "context_value",
    "agent_name",
    "successes",
    "failures",
    "partials",
    "alpha",
    "beta",
    "mean",
    "ci_low",
    "ci_high",
    "p_best",
    "n_events",
    "last_event_at",
]
DAILY_COLUMNS = [
    "event_date",
    "task_type",
    "context_key",
    "context_value",
    "agent_name",
    "n_events",
    "successes",
    "failures",
    "partials",
    "timeouts",
    "partial_reward",
    "last_event_at",
]


def decay_factor(half_life_days: float | None = None, factor: float | None = None) -> float:
    """Per-day weight multiplier gamma in (0, 1]: 1.0 means no decay.

    gamma = 0.5 ** (1 / half_life_days), or `factor` itself; evidence `age` days old weighs gamma ** age.
    """
    if half_life_days is not None and factor is not None:
        raise ValueError("give half_life_days or factor, not both")
    if half_life_days is not None:
        if half_life_days <= 0:
            raise ValueError("half_life_days must be > 0")
        return float(0.5 ** (1.0 / half_life_days))
    if factor is not None:
        if not 0 < factor <= 1:
            raise ValueError("decay factor must be in (0, 1]")
        return float(factor)
    return 1.0


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.astimezone(UTC).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    return pd.Timestamp(value).date()


def _day_array(values: pd.Series) -> np.ndarray:
    """UTC days as numpy datetime64[D] (from dates, naive or tz-aware timestamps, or ISO strings)."""
    stamps = pd.to_datetime(values)
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    return stamps.to_numpy().astype("datetime64[D]")


def counts_from_daily(
    daily: pd.DataFrame,
    half_life_days: float | None = None,
    factor: float | None = None,
    as_of: Any = None,
) -> pd.DataFrame:
    """Sum daily aggregates into decayed evidence per (task_type, context_key, context_value, agent).

    daily: DataFrame of n rows with DAILY_COLUMNS (one per day, task type, context bucket and agent;
        counts >= 0). half_life_days, factor: the decay (`decay_factor`). as_of: the reference day
        (default: the latest event_date); later days are left out, a day `age` days before weighs
        gamma ** age.
    Returns one row per key: KEY_COLUMNS + successes, failures (failures + timeouts), partials,
    partial_alpha (the quality mass sum(q) of partials), all gamma-weighted; n_events (raw), last_event_at.
    """
    missing = [c for c in DAILY_COLUMNS if c not in daily.columns]
    if missing:
        raise ValueError(f"daily aggregates lack columns: {missing}")
    counts = daily[["n_events", "successes", "failures", "partials", "timeouts", "partial_reward"]]
    if len(daily) and (counts.to_numpy(dtype=float, na_value=np.nan) < 0).any():
        raise ValueError("daily aggregates hold negative counts")
    frame = daily[DAILY_COLUMNS]
    days = _day_array(frame["event_date"])
    if as_of is not None:
        ref = np.datetime64(_as_date(as_of), "D")
    else:
        ref = days.max() if len(days) else np.datetime64(0, "D")
    keep = days <= ref
    frame = frame[keep]
    age = (ref - days[keep]).astype(np.int64).astype(float)
    f = decay_factor(half_life_days, factor)
    weight = np.power(f, age) if f < 1.0 else np.ones(len(frame))
    out = frame[KEY_COLUMNS + ["n_events", "last_event_at"]].copy()
    out["n_events"] = out["n_events"].astype(np.int64)
    out["successes"] = weight * frame["successes"].to_numpy(dtype=float)
    out["failures"] = weight * (
        frame["failures"].to_numpy(dtype=float) + frame["timeouts"].to_numpy(dtype=float)
    )
    out["partials"] = weight * frame["partials"].to_numpy(dtype=float)
    out["partial_alpha"] = weight * frame["partial_reward"].to_numpy(dtype=float)
    grouped = out.groupby(KEY_COLUMNS, sort=True, observed=True)
    sums = grouped[["successes", "failures", "partials", "partial_alpha", "n_events"]].sum()
    sums["last_event_at"] = grouped["last_event_at"].max()
    return sums.reset_index()


def _p_best(alpha: np.ndarray, beta: np.ndarray, group: np.ndarray, n_samples: int, seed: int) -> np.ndarray:
    """P(best) of each row within its group, from `n_samples` joint posterior draws.

    alpha, beta, group: (n,), rows sorted by `group` (an integer label per row). Returns (n,): the share
    of the draws (n, n_samples) in which the row's theta is its group's maximum (Scott 2010); a group's
    values sum to 1.
    """
    n = len(alpha)
    result = np.zeros(n)
    if n == 0:
        return result
    rng = np.random.default_rng(seed)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    ends = np.r_[starts[1:], n]
    # Process whole groups in chunks of about 4M samples to bound memory.
    budget = max(1, 4_000_000 // n_samples)
    i = 0
    while i < len(starts):
        j = i
        while j < len(starts) and ends[j] - starts[i] <= budget:
            j += 1
        j = max(j, i + 1)
        lo, hi = starts[i], ends[j - 1]
        draws = rng.beta(alpha[lo:hi, None], beta[lo:hi, None], size=(hi - lo, n_samples))
        local_starts = starts[i:j] - lo
        group_max = np.maximum.reduceat(draws, local_starts, axis=0)
        sizes = ends[i:j] - starts[i:j]
        wins = draws == np.repeat(group_max, sizes, axis=0)
        result[lo:hi] = wins.mean(axis=1)
        i = j
    return result


def posteriors_from_counts(
    counts: pd.DataFrame,
    alpha0: float = 1.0,
    beta0: float = 1.0,
    credible_mass: float = 0.95,
    n_samples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """The posterior table from `counts_from_daily` output.

    alpha = alpha0 + successes + partial_alpha, beta = beta0 + failures + partials - partial_alpha;
    mean = alpha / (alpha + beta); [ci_low, ci_high] = Beta(alpha, beta).ppf([t, 1 - t]) with
    t = (1 - credible_mass) / 2; p_best from `n_samples` draws per row (seeded).

    counts: DataFrame of n rows (KEY_COLUMNS + successes, failures, partials, partial_alpha, n_events,
        last_event_at). alpha0, beta0 > 0: the Beta prior. credible_mass in [0, 1]. n_samples >= 1.
    Returns n rows with POSTERIOR_COLUMNS, sorted by KEY_COLUMNS.
    """
    if alpha0 <= 0 or beta0 <= 0:
        raise ValueError("priors alpha0 and beta0 must be > 0")
    if not 0 <= credible_mass <= 1:
        raise ValueError("credible_mass must be within [0, 1]")
    if n_samples < 1:
        raise ValueError("n_samples must be >= 1")
    needed = [*KEY_COLUMNS, "successes", "failures", "partials", "partial_alpha", "n_events", "last_event_at"]
    missing = [c for c in needed if c not in counts.columns]
    if missing:
        raise ValueError(f"counts lack columns: {missing}")
    frame = counts.sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)
    alpha = alpha0 + frame["successes"].to_numpy(float) + frame["partial_alpha"].to_numpy(float)
    beta = (
        beta0
        + frame["failures"].to_numpy(float)
        + frame["partials"].to_numpy(float)
        - frame["partial_alpha"].to_numpy(float)
    )
    tail = (1.0 - credible_mass) / 2.0
    group = frame.groupby(["task_type", "context_key", "context_value"], sort=False).ngroup().to_numpy()
    out = pd.DataFrame(
        {
            "task_type": frame["task_type"].astype(str),
            "context_key": frame["context_key"].astype(str),
            "context_value": frame["context_value"].astype(str),
            "agent_name": frame["agent_name"].astype(str),
            "successes": frame["successes"].to_numpy(float),
            "failures": frame["failures"].to_numpy(float),
            "partials": frame["partials"].to_numpy(float),
            "alpha": alpha,
            "beta": beta,
            "mean": alpha / (alpha + beta),
            "ci_low": stats.beta.ppf(tail, alpha, beta),
            "ci_high": stats.beta.ppf(1.0 - tail, alpha, beta),
            "p_best": _p_best(alpha, beta, group, n_samples, seed),
            "n_events": frame["n_events"].to_numpy(np.int64),
        }
    )
    out["last_event_at"] = frame["last_event_at"].reset_index(drop=True)
    return out[POSTERIOR_COLUMNS]


def compute_posteriors(
    daily: pd.DataFrame,
    alpha0: float = 1.0,
    beta0: float = 1.0,
    half_life_days: float | None = None,
    decay: float | None = None,
    as_of: Any = None,
    credible_mass: float = 0.95,
    n_samples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Daily aggregates (n rows, DAILY_COLUMNS) -> posterior table (POSTERIOR_COLUMNS), with optional decay.

    `counts_from_daily` then `posteriors_from_counts`; decay is a half-life in days or a per-day factor.
    """
    counts = counts_from_daily(daily, half_life_days=half_life_days, factor=decay, as_of=as_of)
    return posteriors_from_counts(counts, alpha0, beta0, credible_mass, n_samples, seed)
