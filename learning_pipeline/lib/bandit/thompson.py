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
    ('*', ..., agent)                       all task types pooled: the global fallback for unknown task types
P(best) is computed within each (task_type, context_key, context_value) group from posterior samples.

Recommendations (`Recommender`, `recommend`, `recommend_batch`) resolve a request to the most specific
posterior that exists, agent by agent:
    (task, key/value) for each context key in a fixed order -> (task, '*', '*')
    -> ('*', key/value) in the same order -> ('*', '*', '*') -> the prior Beta(alpha0, beta0)
Key order is the recommender's, never the request's: configured `context_keys` first, then the table's
other keys by name; a bucket with fewer than `min_evidence` events (default 0) is passed over for the next.
The table holds single-key buckets only, so there is no joint (complexity x domain) level.

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

import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

ALL = "*"
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


# --------------------------------------------------------------------------- recommendations


@dataclass
class BatchRecommendations:
    """Top-k per request: agent names (m, k), scores (m, k), model_score (m,) and the timestamp.

    Row i holds request i's agents by descending score; model_score[i] is the posterior mean of its top
    agent.
    """

    agents: np.ndarray
    scores: np.ndarray
    model_score: np.ndarray
    timestamp: str

    def __len__(self) -> int:
        return len(self.model_score)

    def to_frame(self) -> pd.DataFrame:
        n, k = self.agents.shape
        return pd.DataFrame(
            {
                "request_index": np.repeat(np.arange(n), k),
                "rank": np.tile(np.arange(1, k + 1), n),
                "agent_name": self.agents.ravel(),
                "score": self.scores.ravel(),
                "model_score": np.repeat(self.model_score, k),
            }
        )

    def response(self, i: int) -> dict:
        return _response(self.agents[i], self.scores[i], float(self.model_score[i]), self.timestamp)


def _response(agents: Iterable[str], scores: Iterable[float], model_score: float, timestamp: str) -> dict:
    return {
        "recommendations": [
            {"agent_name": str(a), "score": float(s), "rank": r}
            for r, (a, s) in enumerate(zip(agents, scores, strict=False), start=1)
        ],
        "model_score": model_score,
        "timestamp": timestamp,
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Recommender:
    """An index over a posterior table, built once, answering single and batch requests fast.

    Every (task_type, context_key, context_value) group of the table gets a dense row of alpha/beta over
    all candidate agents, filled agent by agent along the fallback chain (see module doc), so a request
    costs a few dictionary lookups (single) or integer gathers (batch).

    posteriors: task_type, context_key, context_value, agent_name, alpha, beta (+ n_events). alpha0, beta0
    > 0: the prior. agents: the k candidates (default: the table's). context_keys, min_evidence: see module.
    Index: `agents` (k,); `alpha`, `beta`, `mean` (g + 1, k), a row per group plus `prior_row` (the prior).
    """

    def __init__(
        self,
        posteriors: pd.DataFrame,
        alpha0: float = 1.0,
        beta0: float = 1.0,
        agents: Iterable[str] | None = None,
        context_keys: Iterable[str] | None = None,
        min_evidence: float = 0.0,
    ):
        needed = ("task_type", "context_key", "context_value", "agent_name", "alpha", "beta")
        missing = [c for c in needed if c not in posteriors.columns]
        if missing:
            raise ValueError(f"posterior table lacks columns: {missing}")
        if alpha0 <= 0 or beta0 <= 0:
            raise ValueError("priors alpha0 and beta0 must be > 0")
        if min_evidence < 0:
            raise ValueError("min_evidence must be >= 0")
        self.alpha0, self.beta0 = float(alpha0), float(beta0)
        self.min_evidence = float(min_evidence)
        table = posteriors
        known_agents = sorted(table["agent_name"].astype(str).unique())
        self.agents = np.array(list(agents) if agents is not None else known_agents, dtype=object)
        agent_pos = {a: i for i, a in enumerate(self.agents)}
        n_agents = len(self.agents)

        keys = list(
            zip(
                table["task_type"].astype(str),
                table["context_key"].astype(str),
                table["context_value"].astype(str),
                strict=False,
            )
        )
        group_keys = list(dict.fromkeys(keys))
        group_of = {g: i for i, g in enumerate(group_keys)}
        raw_a = np.full((len(group_keys), n_agents), np.nan)
        raw_b = np.full((len(group_keys), n_agents), np.nan)
        gi = np.fromiter((group_of[k] for k in keys), dtype=np.int64, count=len(keys))
        ai = np.fromiter(
            (agent_pos.get(a, -1) for a in table["agent_name"].astype(str)), dtype=np.int64, count=len(keys)
        )
        ok = ai >= 0
        raw_a[gi[ok], ai[ok]] = table["alpha"].to_numpy(float)[ok]
        raw_b[gi[ok], ai[ok]] = table["beta"].to_numpy(float)[ok]

        def chain(key: tuple[str, str, str]) -> list[int]:
            task, ck, cv = key
            order = [key, (task, ALL, ALL), (ALL, ck, cv), (ALL, ALL, ALL)]
            return [group_of[k] for k in dict.fromkeys(order) if k in group_of]

        # Resolved rows: every table group, plus a final row for "nothing known" (the prior).
        n_rows = len(group_keys) + 1
        self.alpha = np.full((n_rows, n_agents), self.alpha0)
        self.beta = np.full((n_rows, n_agents), self.beta0)
        for row, key in enumerate(group_keys):
            filled = np.zeros(n_agents, bool)
            for g in chain(key):
                take = ~filled & ~np.isnan(raw_a[g])
                self.alpha[row, take] = raw_a[g, take]
                self.beta[row, take] = raw_b[g, take]
                filled |= take
        self.mean = self.alpha / (self.alpha + self.beta)
        self.prior_row = n_rows - 1
        n_ev = table["n_events"].to_numpy(float) if "n_events" in table.columns else np.full(len(gi), np.inf)
        evidence = np.bincount(gi, weights=n_ev, minlength=len(group_keys))
        self._groups = group_of  # resolution uses level rows and context buckets with enough evidence
        ok_rows = {i for i, g in enumerate(group_keys) if g[1] == ALL or not evidence[i] < self.min_evidence}
        self._row = {g: i for g, i in group_of.items() if i in ok_rows}
        self._tasks = sorted({k[0] for k in group_keys} - {ALL})
        table_keys = sorted({k[1] for k in group_keys} - {ALL})
        configured = [str(k) for k in dict.fromkeys(context_keys or ()) if str(k) in table_keys]
        # the fixed order in which context keys are tried, whatever the request's order
        self._context_keys = configured + [k for k in table_keys if k not in configured]

    # ---- resolution
    def group_row(self, task_type: str, context_key: str = ALL, context_value: str = ALL) -> int | None:
        """The index row of one (task_type, context_key, context_value) group of the table, if present."""
        return self._groups.get((str(task_type), str(context_key), str(context_value)))

    def resolve(self, task_type: str | None, context: Mapping[str, Any] | None = None) -> int:
        """The index row for a request (most specific posterior that exists)."""
        row = self._row
        task = ALL if task_type is None else str(task_type)
        context = context or {}
        items = [(k, str(context[k])) for k in self._context_keys if context.get(k) is not None]
        for t in (task, ALL):
            for k, v in items:
                found = row.get((t, k, v))
                if found is not None:
                    return found
            found = row.get((t, ALL, ALL))
            if found is not None:
                return found
        return self.prior_row

    def resolve_batch(self, requests: pd.DataFrame) -> np.ndarray:
        """Index rows (m,) for a frame of m requests with `task_type` and optional context columns (one per
        context key) or a `context` column of dicts."""
        if "task_type" not in requests.columns:
            raise ValueError("requests need a task_type column")
        n = len(requests)
        frame = requests
        if "context" in frame.columns and not any(k in frame.columns for k in self._context_keys):
            ctx = pd.DataFrame.from_records(
                [c if isinstance(c, Mapping) else {} for c in frame["context"]], index=frame.index
            )
            frame = pd.concat([frame[["task_type"]], ctx], axis=1)
        # Context keys in the recommender's fixed order, never the frame's column order.
        ctx_cols = [c for c in self._context_keys if c in frame.columns]
        task = frame["task_type"].astype(object).where(frame["task_type"].notna(), ALL).to_numpy()
        task_codes, task_uniques = pd.factorize(task)
        task_names = [str(t) for t in task_uniques]
        result = np.full(n, -1, dtype=np.int64)
        factorized = []
        for col in ctx_cols:
            codes, uniques = pd.factorize(frame[col].astype(object).to_numpy())
            # Missing values get code -1, which indexes the extra last column (never found).
            factorized.append((col, np.where(codes < 0, len(uniques), codes), [str(v) for v in uniques]))
        for names, level_codes in ((task_names, task_codes), ([ALL], np.zeros(n, dtype=np.int64))):
            for col, codes, values in factorized:  # (task level, key, value) lookups: (tasks, values + 1)
                lut = np.array(
                    [[self._row.get((t, col, v), -1) for v in values] + [-1] for t in names], dtype=np.int64
                ).reshape(len(names), len(values) + 1)
                result = np.where(result < 0, lut[level_codes, codes], result)
            level = np.array([self._row.get((t, ALL, ALL), -1) for t in names], dtype=np.int64)
            result = np.where(result < 0, level[level_codes], result)
        return np.where(result < 0, self.prior_row, result)

    # ---- scoring
    def _scores(self, rows: np.ndarray, mode: str, rng: np.random.Generator | None) -> np.ndarray:
        """(m, k) scores of the index rows (m,): posterior means, or one Beta draw per agent (Thompson)."""
        if mode == "mean":
            return self.mean[rows]
        if mode == "thompson":
            rng = rng if rng is not None else np.random.default_rng()
            return rng.beta(self.alpha[rows], self.beta[rows])
        raise ValueError(f"mode must be 'thompson' or 'mean', not {mode!r}")

    def recommend(
        self,
        task_type: str | None,
        context: Mapping[str, Any] | None = None,
        top_k: int = 3,
        mode: str = "thompson",
        rng: np.random.Generator | None = None,
    ) -> dict:
        """Top-k agents for one request (see the module function `recommend` for the shape)."""
        row = self.resolve(task_type, context)
        scores = self._scores(np.array([row]), mode, rng)[0]
        k = min(top_k, len(scores))
        order = np.argsort(-scores, kind="stable")[:k]
        model_score = float(self.mean[row, order[0]]) if k else float("nan")
        return _response(self.agents[order], scores[order], model_score, _now())

    def recommend_batch(
        self,
        requests: pd.DataFrame,
        top_k: int = 3,
        mode: str = "thompson",
        rng: np.random.Generator | None = None,
    ) -> BatchRecommendations:
        """Top-k agents for each of the m requests of a frame (see `resolve_batch`)."""
        rows = self.resolve_batch(requests)
        return self.recommend_rows(rows, top_k, mode, rng)

    def recommend_rows(
        self, rows: np.ndarray, top_k: int = 3, mode: str = "thompson", rng: np.random.Generator | None = None
    ) -> BatchRecommendations:
        """Top-k for already resolved index rows: rows (m,) integers in [0, g] -> (m, min(top_k, k)).

        The vectorized core: one score per (request, agent), then a partial sort per row.
        """
        rows = np.asarray(rows)
        if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
            raise ValueError("rows must be a 1-D array of integer index rows")
        if len(rows) and (rows.min() < 0 or rows.max() > self.prior_row):
            raise ValueError(f"index rows must be within [0, {self.prior_row}]")
        scores = self._scores(rows, mode, rng)
        n, n_agents = scores.shape
        k = min(top_k, n_agents)
        if k < n_agents:
            part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(n_agents), (n, n_agents))
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        top = np.take_along_axis(part, order, axis=1)
        top_scores = np.take_along_axis(part_scores, order, axis=1)
        model_score = self.mean[rows, top[:, 0]] if k else np.full(n, np.nan)
        return BatchRecommendations(self.agents[top], top_scores, model_score, _now())


_CACHE: dict[int, Recommender] = {}


def _recommender_for(posteriors: pd.DataFrame | Recommender, alpha0: float, beta0: float) -> Recommender:
    if isinstance(posteriors, Recommender):
        return posteriors
    key = id(posteriors)
    cached = _CACHE.get(key)
    if cached is None or (cached.alpha0, cached.beta0) != (alpha0, beta0):
        cached = Recommender(posteriors, alpha0=alpha0, beta0=beta0)
        _CACHE[key] = cached
        weakref.finalize(posteriors, _CACHE.pop, key, None)
    return cached


def recommend(
    posteriors: pd.DataFrame | Recommender,
    task_type: str | None,
    context: Mapping[str, Any] | None = None,
    top_k: int = 3,
    mode: str = "thompson",
    rng: np.random.Generator | None = None,
    alpha0: float = 1.0,
    beta0: float = 1.0,
) -> dict:
    """Top-k agents for one request, in the seed's shape:
    {"recommendations": [{"agent_name", "score", "rank"}], "model_score", "timestamp"}.

    score is a posterior sample (mode="thompson") or the posterior mean (mode="mean"); model_score is the
    posterior mean of the top-ranked agent. A DataFrame is indexed once and cached while it lives.
    """
    return _recommender_for(posteriors, alpha0, beta0).recommend(task_type, context, top_k, mode, rng)


def recommend_batch(
    posteriors: pd.DataFrame | Recommender,
    requests_df: pd.DataFrame,
    top_k: int = 3,
    mode: str = "thompson",
    rng: np.random.Generator | None = None,
    alpha0: float = 1.0,
    beta0: float = 1.0,
) -> pd.DataFrame:
    """Many requests at once; one row per (request_index, rank) with agent_name, score, model_score."""
    return (
        _recommender_for(posteriors, alpha0, beta0).recommend_batch(requests_df, top_k, mode, rng).to_frame()
    )
