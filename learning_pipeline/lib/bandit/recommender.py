"""Recommendations from a posterior table (`thompson`): resolve a request to its most specific posterior,
then rank agents by posterior mean or by one Thompson draw each.

Resolution, agent rows first (`Recommender`): a request (task_type, context) resolves to the first group of
the table where some agent has at least `min_evidence` events (context buckets; level rows always answer)
along

    (task, joint bucket) -> (task, key/value) for each context key in a fixed order -> (task, '*', '*')
    -> ('*', joint bucket) -> ('*', key/value) in the same order -> ('*', '*', '*') -> the prior

The joint bucket is that of all the context keys the request has values for (`contexts.joint_bucket`, the
same name the SQL macro gives it), so key order never matters; single keys are tried in the recommender's
order, never the request's: configured `context_keys` first, then the table's other keys by name. Within a
group an agent without a row of its own, or with fewer than `min_evidence` events there, takes the next
level's row along the same chain (a joint group goes through its single keys first): each agent is judged at
the most specific level where it has been measured, so a thin estimate never outvotes a well-measured one.

Shapes: g (task_type, context_key, context_value) groups of the table, k candidate agents, m requests.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from learning_pipeline.lib.bandit.contexts import (
    ALL,
    DEFAULT_MIN_EVIDENCE,
    is_joint,
    joint_bucket,
    joint_parts,
)


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
    > 0: the prior. agents: the k candidates (default: the table's). context_keys: the order single keys are
    tried in. min_evidence >= 0: events an agent needs in a context bucket for its row there to count.
    Index: `agents` (k,); `alpha`, `beta`, `mean` (g + 1, k), a row per group plus `prior_row` (the prior).
    """

    def __init__(
        self,
        posteriors: pd.DataFrame,
        alpha0: float = 1.0,
        beta0: float = 1.0,
        agents: Iterable[str] | None = None,
        context_keys: Iterable[str] | None = None,
        min_evidence: float = DEFAULT_MIN_EVIDENCE,
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
        table_keys = sorted({k[1] for k in group_keys if k[1] != ALL and not is_joint(k[1])})
        configured = [str(k) for k in dict.fromkeys(context_keys or ()) if str(k) in table_keys]
        # the fixed order in which single context keys are tried, whatever the request's order
        self._context_keys = configured + [k for k in table_keys if k not in configured]
        self._has_joint = any(is_joint(k[1]) for k in group_keys)
        rank = {k: i for i, k in enumerate(self._context_keys)}

        raw_a = np.full((len(group_keys), n_agents), np.nan)
        raw_b = np.full((len(group_keys), n_agents), np.nan)
        gi = np.fromiter((group_of[k] for k in keys), dtype=np.int64, count=len(keys))
        ai = np.fromiter(
            (agent_pos.get(a, -1) for a in table["agent_name"].astype(str)), dtype=np.int64, count=len(keys)
        )
        ok = ai >= 0
        n_ev = table["n_events"].to_numpy(float) if "n_events" in table.columns else np.full(len(gi), np.inf)
        # an agent's row in a context bucket counts only with min_evidence events of its own; thinner, the
        # agent takes the next level's row (level rows always count)
        level = np.array([k[1] == ALL for k in keys], dtype=bool)
        counted = ok & (level | (n_ev >= self.min_evidence))
        raw_a[gi[counted], ai[counted]] = table["alpha"].to_numpy(float)[counted]
        raw_b[gi[counted], ai[counted]] = table["beta"].to_numpy(float)[counted]

        def chain(key: tuple[str, str, str]) -> list[int]:
            task, ck, cv = key
            parts = (
                sorted(joint_parts(ck, cv), key=lambda kv: rank.get(kv[0], len(rank))) if is_joint(ck) else []
            )
            order = [key, *((task, k, v) for k, v in parts), (task, ALL, ALL)]
            order += [(ALL, ck, cv), *((ALL, k, v) for k, v in parts), (ALL, ALL, ALL)]
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
        answers = np.zeros(len(group_keys), dtype=bool)  # a bucket answers when some agent in it counts
        answers[gi[counted]] = True
        self._groups = group_of  # resolution uses level rows and context buckets with enough evidence
        ok_rows = {i for i, g in enumerate(group_keys) if g[1] == ALL or answers[i]}
        self._row = {g: i for g, i in group_of.items() if i in ok_rows}
        self._tasks = sorted({k[0] for k in group_keys} - {ALL})

    # ---- resolution
    def group_row(self, task_type: str, context_key: str = ALL, context_value: str = ALL) -> int | None:
        """The index row of one (task_type, context_key, context_value) group of the table, if present."""
        return self._groups.get((str(task_type), str(context_key), str(context_value)))

    def resolve(self, task_type: str | None, context: Mapping[str, Any] | None = None) -> int:
        """The index row for a request (most specific posterior with enough evidence)."""
        row = self._row
        task = ALL if task_type is None else str(task_type)
        context = context or {}
        values = {k: str(context[k]) for k in self._context_keys if context.get(k) is not None}
        joint = joint_bucket(values) if self._has_joint else None
        buckets = ([joint] if joint else []) + list(values.items())
        for t in (task, ALL):
            for k, v in buckets:
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
        # Per level: a code per request and the bucket of each code (None: never found). A missing value
        # gets code -1, which becomes the extra last code.
        levels: list[tuple[np.ndarray, list]] = []
        for col in ctx_cols:
            codes, uniques = pd.factorize(frame[col].astype(object).to_numpy())
            values = [str(v) for v in uniques]
            levels.append((np.where(codes < 0, len(values), codes), [(col, v) for v in values] + [None]))
        if self._has_joint and len(levels) >= 2:
            combos, combo_codes = np.unique(
                np.column_stack([codes for codes, _ in levels]), axis=0, return_inverse=True
            )
            joint = [
                joint_bucket(dict(b[c] for (_, b), c in zip(levels, combo, strict=True) if b[c] is not None))
                for combo in combos
            ]
            levels.insert(0, (combo_codes.ravel(), joint))
        result = np.full(n, -1, dtype=np.int64)
        for names, level_codes in ((task_names, task_codes), ([ALL], np.zeros(n, dtype=np.int64))):
            for codes, buckets in levels:  # (task level, bucket) lookups: (tasks, codes)
                lut = np.array(
                    [[self._row.get((t, *b), -1) if b else -1 for b in buckets] for t in names],
                    dtype=np.int64,
                ).reshape(len(names), len(buckets))
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
