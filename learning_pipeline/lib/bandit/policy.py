"""Routing policies: trained on events before a cut-off, evaluated off-policy on events after it, gated.

A `RoutingPolicy` is the one object that is registered, evaluated, shadowed and served. For a request
(task_type, context, eligible agents) it scores every agent and selects one with the probabilities of
`exploration.selection_probabilities`: Thompson sampling over the scores with each agent's posterior
uncertainty, plus an exploration floor. The gate evaluates exactly those probabilities; the API samples
from them and logs them as the decision's propensities.

Scores come from the Beta posterior table (`agent_posteriors` contract: one broad row per
(task_type, agent) with context_key = context_value = '*', plus one row per context bucket such as
('complexity', 'high')), optionally replaced by a scikit-learn contextual success model when that model
beats the posteriors on a time-based validation split by log loss. Uncertainty always comes from the
posteriors (the evidence behind the score).

Posterior scoring: `thompson.Recommender` (most specific context bucket -> task level -> pooled -> prior).
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from learning_pipeline.lib.bandit import exploration, ope, thompson
from learning_pipeline.lib.bandit import gate as gate_rules
from learning_pipeline.lib.bandit.gate import GateDecision, eval_gate  # noqa: F401 (re-exported)
from learning_pipeline.lib.storage.lake import write_bytes_atomic

BROAD = thompson.ALL
MODEL_FILE = "model.pkl"
DEFAULT_CONTEXT_KEYS = ("complexity", "domain")


def check_posteriors(posteriors: pd.DataFrame) -> None:
    missing = [
        c
        for c in ("task_type", "context_key", "context_value", "agent_name", "mean", "n_events")
        if c not in posteriors.columns
    ]
    if missing:
        raise ValueError(f"posterior table lacks columns {missing}")
    if posteriors.empty:
        raise ValueError("posterior table is empty: no training events before the cut-off")
    if not ((posteriors["context_key"] == BROAD) & (posteriors["context_value"] == BROAD)).any():
        raise ValueError("posterior table has no broad ('*', '*') rows")


@dataclass
class RoutingPolicy:
    """A posterior table (+ optional contextual model) that routes each request to its top agent."""

    posteriors: pd.DataFrame
    agents: tuple[str, ...]
    context_keys: tuple[str, ...] = DEFAULT_CONTEXT_KEYS
    prior_mean: float = 0.5
    params: dict[str, Any] = field(default_factory=dict)
    model: Any = None  # fitted scikit-learn pipeline over (task_type, context keys, agent) or None
    model_kind: str = "posteriors"
    validation: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        check_posteriors(self.posteriors)
        self.agents = tuple(self.agents)
        self.context_keys = tuple(self.context_keys)
        self._build_index()

    # ---- scoring -------------------------------------------------------------------------------
    def _build_index(self) -> None:

        post = self.posteriors
        alpha0 = float(self.params.get("alpha0", 1.0))
        beta0 = float(self.params.get("beta0", 1.0))
        self.prior_mean = alpha0 / (alpha0 + beta0)
        self._recommender = thompson.Recommender(
            post, alpha0=alpha0, beta0=beta0, agents=self.agents, context_keys=self.context_keys
        )
        broad = post[
            (post["context_key"] == BROAD) & (post["context_value"] == BROAD) & (post["task_type"] != BROAD)
        ]
        self._broad_mean = broad.pivot_table(
            index="task_type", columns="agent_name", values="mean", aggfunc="mean"
        )
        self._broad_mean = self._broad_mean.reindex(columns=list(self.agents))
        self._known_tasks = set(self._broad_mean.index)

    def _contexts_frame(self, contexts: pd.DataFrame) -> pd.DataFrame:
        frame = pd.DataFrame(
            {
                "task_type": contexts["task_type"]
                .astype(object)
                .where(contexts["task_type"].notna(), "unspecified")
            }
        )
        for key in self.context_keys:
            frame[key] = contexts[key].astype(object) if key in contexts.columns else None
        return frame.reset_index(drop=True)

    def posterior_scores(self, contexts: pd.DataFrame) -> np.ndarray:
        """(m, k) posterior mean success for m (task_type, context) rows (thompson.Recommender)."""
        ctx = self._contexts_frame(contexts)
        return self._recommender.mean[self._recommender.resolve_batch(ctx)]

    def model_scores(self, contexts: pd.DataFrame) -> np.ndarray:
        ctx = self._contexts_frame(contexts)
        m, k = len(ctx), len(self.agents)
        grid = ctx.loc[np.repeat(np.arange(m), k)].reset_index(drop=True)
        grid["agent_name"] = np.tile(np.array(self.agents, dtype=object), m)
        proba = self.model.predict_proba(feature_frame(grid, self.context_keys))[:, 1]
        return proba.reshape(m, k)

    def score_contexts(self, contexts: pd.DataFrame) -> np.ndarray:
        if self.model is not None:
            return self.model_scores(contexts)
        return self.posterior_scores(contexts)

    def scores(self, events: pd.DataFrame) -> np.ndarray:
        """(n, k) predicted success per event and agent; computed once per distinct context."""
        ctx = self._contexts_frame(events)
        codes, uniques = _factorize_rows(ctx)
        return self.score_contexts(uniques)[codes]

    def posterior_sd(self, contexts: pd.DataFrame) -> np.ndarray:
        """(m, k) standard deviation of each agent's resolved Beta posterior."""
        rows = self._recommender.resolve_batch(self._contexts_frame(contexts))
        return exploration.beta_sd(self._recommender.alpha[rows], self._recommender.beta[rows])

    @property
    def known_tasks(self) -> frozenset[str]:
        """Task types with evidence in this policy (others get the cold-start answer)."""
        return frozenset(self._known_tasks)

    @property
    def exploration(self) -> float:
        return float(self.params.get("exploration", exploration.DEFAULT_EXPLORATION))

    @property
    def prior_sd(self) -> float:
        alpha0, beta0 = float(self.params.get("alpha0", 1.0)), float(self.params.get("beta0", 1.0))
        return float(exploration.beta_sd(np.array(alpha0), np.array(beta0)))

    def selection_probabilities(
        self, contexts: pd.DataFrame, universe: tuple[str, ...], eligible: np.ndarray
    ) -> np.ndarray:
        """(m, U) probability of selecting each agent of `universe` for m (task_type, context) rows.

        eligible: (m, U) bool, the agents each request may be routed to. Agents unknown to this policy
        score its prior mean with the prior's uncertainty. The same request gives the same probabilities
        whatever the universe's order or the other rows: see `exploration`.
        """
        mean = np.full((len(contexts), len(universe)), self.prior_mean)
        sd = np.full_like(mean, self.prior_sd)
        pos = {a: i for i, a in enumerate(universe)}
        mine = [i for i, a in enumerate(self.agents) if a in pos]
        cols = np.array([pos[self.agents[i]] for i in mine], dtype=int)
        if len(cols):
            mean[:, cols] = self.score_contexts(contexts)[:, mine]
            sd[:, cols] = self.posterior_sd(contexts)[:, mine]
        return exploration.selection_probabilities(mean, sd, eligible, tuple(universe), self.exploration)

    def decide(self, requests: pd.DataFrame) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
        """Universe, (m, U) selection probabilities and (m, U) eligibility for request rows.

        requests: task_type, context key columns, optional `candidate_agents` (list or None per row). Without
        candidates a request may go to the agents with evidence for its task type (all for an unknown one).
        """
        listed = requests["candidate_agents"] if "candidate_agents" in requests.columns else None
        extra = sorted(
            {a for c in (listed if listed is not None else []) if c is not None for a in c} - set(self.agents)
        )
        universe = tuple(self.agents) + tuple(extra)
        known = np.zeros((len(requests), len(universe)), dtype=bool)
        known[:, : len(self.agents)] = self.known_agent_mask(requests["task_type"].to_numpy())
        if listed is not None:
            mask, has_list = candidate_mask([list(c) if c is not None else [] for c in listed], universe)
            eligible = np.where(has_list[:, None], mask, known)
        else:
            eligible = known
        return universe, self.selection_probabilities(requests, universe, eligible), eligible

    def known_agent_mask(self, task_types: np.ndarray) -> np.ndarray:
        """(n, k): agents with evidence for the event's task type (all agents for unknown task types)."""
        tasks = pd.Series(task_types, dtype=object).fillna("unspecified").to_numpy()
        seen = self._broad_mean.notna().reindex(tasks).to_numpy()
        unknown = ~np.isin(tasks, list(self._known_tasks))
        seen = np.where(np.isnan(seen.astype(float)), False, seen).astype(bool)
        seen[unknown] = True
        seen[~seen.any(axis=1)] = True
        return seen

    def recommend(self, requests: pd.DataFrame, top_k: int = 3) -> pd.DataFrame:
        """Top-k agents per request row by selection probability, with their propensities and scores.

        requests: task_type, context key columns, optional top_k and candidate_agents columns.
        """
        columns = ["task_type", "agent_name", "score", "agents", "scores", "propensities"]
        if requests.empty:
            return pd.DataFrame({c: [] for c in columns})
        requests = requests.reset_index(drop=True)
        universe, probs, eligible = self.decide(requests)
        scores = np.full(probs.shape, self.prior_mean)
        scores[:, : len(self.agents)] = self.score_contexts(requests)
        order = np.argsort(-np.where(eligible, probs, -1.0), axis=1, kind="stable")
        ks = (
            requests["top_k"].fillna(top_k).astype(int).to_numpy()
            if "top_k" in requests.columns
            else np.full(len(requests), top_k)
        )
        ks = np.clip(np.minimum(ks, eligible.sum(axis=1)), 1, None)
        names = np.array(universe, dtype=object)[order]
        ranked_scores = np.take_along_axis(scores, order, axis=1)
        ranked_probs = np.take_along_axis(probs, order, axis=1)
        return pd.DataFrame(
            {
                "task_type": self._contexts_frame(requests)["task_type"].to_numpy(),
                "agent_name": names[:, 0],
                "score": ranked_scores[:, 0],
                "agents": [names[i, : ks[i]].tolist() for i in range(len(requests))],
                "scores": [ranked_scores[i, : ks[i]].round(6).tolist() for i in range(len(requests))],
                "propensities": [ranked_probs[i, : ks[i]].tolist() for i in range(len(requests))],
            }
        )

    # ---- persistence ---------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the policy's files; a fitted model is pickled atomically and its SHA-256 kept in policy.json
        (the registry records it too, so a loader can refuse a model file that was swapped)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.posteriors.to_parquet(directory / "posteriors.parquet", index=False)
        meta = {
            "agents": list(self.agents),
            "context_keys": list(self.context_keys),
            "params": self.params,
            "model_kind": self.model_kind,
            "validation": self.validation,
        }
        if self.model is not None:
            blob = pickle.dumps(self.model)
            write_bytes_atomic(directory / MODEL_FILE, blob)
            meta["model_sha256"] = hashlib.sha256(blob).hexdigest()
        (directory / "policy.json").write_text(json.dumps(meta, indent=2, default=str))
        return directory

    @classmethod
    def load(cls, directory: str | Path, expected_model_sha256: str | None = None) -> RoutingPolicy:
        """Read a saved policy. With `expected_model_sha256` (the digest recorded at registration, from a
        trusted store) a model file whose digest differs is refused before it is unpickled."""
        directory = Path(directory)
        meta = json.loads((directory / "policy.json").read_text())
        model = None
        if (directory / MODEL_FILE).exists():
            blob = (directory / MODEL_FILE).read_bytes()
            digest = hashlib.sha256(blob).hexdigest()
            if expected_model_sha256 is not None and digest != expected_model_sha256:
                raise ValueError(
                    f"{directory / MODEL_FILE} has SHA-256 {digest[:12]}..., the registered model "
                    f"{expected_model_sha256[:12]}...: refusing to load a model file that was changed"
                )
            model = pickle.loads(blob)
        return cls(
            posteriors=pd.read_parquet(directory / "posteriors.parquet"),
            agents=tuple(meta["agents"]),
            context_keys=tuple(meta["context_keys"]),
            params=meta.get("params", {}),
            model=model,
            model_kind=meta.get("model_kind", "posteriors"),
            validation=meta.get("validation", {}),
        )


def _encode(values: Any) -> tuple[np.ndarray, list]:
    """Codes (n,) into the distinct values (NULL is a value of its own), via Arrow dictionary encoding."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = (
        values
        if isinstance(values, (pa.Array, pa.ChunkedArray))
        else pa.array(np.asarray(values, dtype=object), type=pa.string(), from_pandas=True)
    )
    encoded = pc.dictionary_encode(arr, null_encoding="encode")
    if isinstance(encoded, pa.ChunkedArray):
        encoded = (
            encoded.unify_dictionaries().combine_chunks()
            if encoded.num_chunks
            else pa.array([], pa.dictionary(pa.int32(), pa.string()))
        )
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary.to_pylist()


def _factorize_rows(frame: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Codes (n,) and the distinct rows of `frame` (NULLs kept as a value); integer work only."""
    key = np.zeros(len(frame), dtype=np.int64)
    for column in frame.columns:
        codes, uniques = _encode(frame[column])
        key = key * (len(uniques) + 1) + codes
    _, first, codes = np.unique(key, return_index=True, return_inverse=True)
    return codes.ravel(), frame.iloc[first].reset_index(drop=True)


# ---- contextual success model (scikit-learn) ------------------------------------------------------


def feature_frame(rows: pd.DataFrame, context_keys: tuple[str, ...]) -> pd.DataFrame:
    """Categorical features: task_type, each context key, agent, and agent x (task_type, each context key)."""

    def col(name: str) -> pd.Series:
        values = rows[name] if name in rows.columns else pd.Series([None] * len(rows), index=rows.index)
        return values.astype(object).where(values.notna(), "<none>").astype(str)

    agent = col("agent_name")
    out = {"task_type": col("task_type"), "agent_name": agent}
    for key in context_keys:
        out[key] = col(key)
    for name in ("task_type", *context_keys):
        out[f"agent_x_{name}"] = agent + "|" + out[name]
    return pd.DataFrame(out).reset_index(drop=True)


def fit_contextual_model(cells: pd.DataFrame, context_keys: tuple[str, ...], seed: int = 0):
    """Logistic regression on one-hot task, context, agent and agent interactions, fitted on aggregated cells
    (task, context..., agent, reward_sum, n) with weights: each cell is one positive row weighted by its reward
    sum and one negative row weighted by the rest. Unknown categories at prediction time count as absent."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    x = feature_frame(cells, context_keys)
    pos = cells["reward_sum"].to_numpy(float)
    neg = cells["n"].to_numpy(float) - pos
    xx = pd.concat([x, x], ignore_index=True)
    y = np.r_[np.ones(len(x)), np.zeros(len(x))]
    w = np.r_[pos, neg]
    keep = w > 0
    model = make_pipeline(
        OneHotEncoder(handle_unknown="ignore"),
        LogisticRegression(C=1.0, max_iter=500, random_state=seed),
    )
    model.fit(
        xx[keep].reset_index(drop=True), y[keep], logisticregression__sample_weight=w[keep] / w[keep].mean()
    )
    return model


def weighted_log_loss(pred: np.ndarray, reward_sum: np.ndarray, n: np.ndarray) -> float:
    p = np.clip(pred, 1e-6, 1 - 1e-6)
    return float(-(reward_sum * np.log(p) + (n - reward_sum) * np.log(1 - p)).sum() / max(n.sum(), 1e-12))


# ---- the eval gate --------------------------------------------------------------------------------


# GateDecision and eval_gate live in lib/bandit/gate.py (rules documented there); re-exported here.


# ---- held-out evaluation --------------------------------------------------------------------------


def candidate_mask(candidate_agents: Any, agents: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) mask of each event's candidate agents and a (n,) flag for events that listed any."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = (
        candidate_agents
        if isinstance(candidate_agents, (pa.Array, pa.ChunkedArray))
        else pa.array(list(candidate_agents), type=pa.list_(pa.string()))
    )
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    mask = np.zeros((n, len(agents)), dtype=bool)
    if n == 0:
        return mask, np.zeros(0, dtype=bool)
    flat = arr.flatten()
    parents = pc.list_parent_indices(arr).to_numpy()
    codes = pc.index_in(flat, value_set=pa.array(list(agents), pa.string())).to_numpy(zero_copy_only=False)
    codes = np.where(np.isnan(codes.astype(float)), -1, codes).astype(np.int64)
    ok = codes >= 0
    mask[parents[ok], codes[ok]] = True
    return mask, mask.any(axis=1)


@dataclass
class CycleEvaluation:
    evaluation: ope.PolicyEvaluation
    gate: GateDecision
    calibration: dict[str, dict[str, float]]
    agents: tuple[str, ...]
    n_events: int
    decision_join: dict[str, int] = field(default_factory=dict)  # outcomes vs the decision log
    # (n, U) selection probabilities of each evaluated policy per held-out event, when asked to keep them
    target_probabilities: dict[str, np.ndarray] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        out = {
            "baseline_score": self.gate.baseline_score,
            "candidate_score": self.gate.candidate_score,
            "improvement": self.gate.improvement,
            "improvement_ci_low": self.gate.improvement_ci_low,
            "improvement_ci_high": self.gate.improvement_ci_high,
            "relative_improvement": self.gate.relative_improvement,
            "gate_threshold": self.gate.threshold,
            "gate_effective_sample_size": self.gate.effective_sample_size,
            "samples": float(self.n_events),
            "propensity_coverage": self.evaluation.propensity_coverage,
            "accepted": float(self.gate.accepted),
        }
        out.update(self.evaluation.flat_metrics())
        out.update({f"decisions.{name}": float(value) for name, value in self.decision_join.items()})
        for policy, cal in self.calibration.items():
            for name, value in cal.items():
                out[f"{policy}.{name}"] = value
        return out


def _aligned_scores(
    policy: RoutingPolicy, events: pd.DataFrame, universe: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Scores over `universe` (agents unknown to the policy get its prior mean) and a mask of known agents."""
    own = policy.score_contexts(events)
    out = np.full((len(events), len(universe)), policy.prior_mean)
    known = np.zeros(len(universe), dtype=bool)
    pos = {a: i for i, a in enumerate(universe)}
    cols = np.array([pos[a] for a in policy.agents], dtype=int)
    out[:, cols] = own
    known[cols] = True
    return out, known


def evaluate_candidate(
    candidate: RoutingPolicy,
    champion: RoutingPolicy | None,
    events: pd.DataFrame,
    candidate_agents: Any = None,
    n_bootstrap: int = 500,
    seed: int = 0,
    min_improvement: float = gate_rules.DEFAULT_MIN_IMPROVEMENT,
    max_regression: float = gate_rules.DEFAULT_MAX_REGRESSION,
    min_propensity_coverage: float = 0.95,
    confidence: float = 0.95,
    keep_targets: bool = False,
    min_relative_improvement: float = gate_rules.DEFAULT_MIN_RELATIVE_IMPROVEMENT,
    min_events: int = gate_rules.DEFAULT_MIN_EVENTS,
    min_effective_sample_size: float = gate_rules.DEFAULT_MIN_EFFECTIVE_SAMPLE_SIZE,
    max_weight: float | None = ope.DEFAULT_MAX_WEIGHT,
    top_k: int = 3,
) -> CycleEvaluation:
    """Evaluate candidate vs champion (or uniform random when there is none) on held-out events.

    events: columns task_type, <context keys>, agent_name, reward, selection_propensity (optional).
    candidate_agents: the events' candidate lists (Arrow list array or sequence; None = not logged), else
    an events column of that name is used. The gate settings are those of `gate.eval_gate`; max_weight
    clips the importance weights (`ope.evaluate_policies`); top_k: the served list length replayed per
    policy (`ope.top_k_metrics`, in the evaluation's diagnostics).
    """
    if events.empty:
        raise ValueError("no held-out events after the cut-off")
    agent_codes, logged_agents = _encode(events["agent_name"])
    if any(a is None for a in logged_agents):
        raise ValueError("held-out events with a NULL agent_name")
    universe = tuple(
        sorted(set(candidate.agents) | set(champion.agents if champion else ()) | set(logged_agents))
    )
    position = np.array([universe.index(a) for a in logged_agents], dtype=np.int64)
    actions = position[agent_codes]
    data = ope.LoggedData(
        universe,
        actions,
        events["reward"].to_numpy(float),
        events["selection_propensity"].to_numpy(float, na_value=np.nan)
        if "selection_propensity" in events.columns
        else np.full(len(events), np.nan),
    )
    # what the router could choose from: the logged candidate set, else agents seen for the task type
    if candidate_agents is None and "candidate_agents" in events.columns:
        candidate_agents = events["candidate_agents"]
    if candidate_agents is not None:
        listed, has_list = candidate_mask(candidate_agents, universe)
    else:
        listed, has_list = np.zeros((data.n, len(universe)), bool), np.zeros(data.n, bool)
    # distinct contexts: every policy is scored once per context, then broadcast to events
    ctx_cols = ["task_type", *[k for k in candidate.context_keys if k in events.columns]]
    if champion is not None:
        ctx_cols += [k for k in champion.context_keys if k in events.columns and k not in ctx_cols]
    ctx_codes, contexts = _factorize_rows(events[ctx_cols])
    task_codes, task_values = _encode(contexts["task_type"])
    seen_by_task = np.zeros((len(task_values), len(universe)), dtype=bool)
    seen_by_task[task_codes[ctx_codes], actions] = True
    tasks = (
        contexts["task_type"].astype(object).where(contexts["task_type"].notna(), "unspecified").to_numpy()
    )
    cand_scores_ctx, _ = _aligned_scores(candidate, contexts, universe)
    cand_task_known = np.zeros((len(contexts), len(universe)), dtype=bool)
    cand_task_known[:, [universe.index(a) for a in candidate.agents]] = candidate.known_agent_mask(tasks)
    avail_ctx = seen_by_task[task_codes] | cand_task_known
    available = np.where(has_list[:, None], listed, avail_ctx[ctx_codes])
    available[np.arange(data.n), data.actions] |= ~has_list  # the logged choice was available
    cand_scores = cand_scores_ctx[ctx_codes]

    # one probability computation per distinct (context, eligible set), broadcast to the events
    packed = np.packbits(available, axis=1)
    _, pattern = np.unique(packed, axis=0, return_inverse=True)
    combo_key = ctx_codes.astype(np.int64) * (int(pattern.max()) + 1 if len(pattern) else 1) + pattern.ravel()
    _, combo_first, combo_codes = np.unique(combo_key, return_index=True, return_inverse=True)
    combo_contexts = contexts.iloc[ctx_codes[combo_first]].reset_index(drop=True)
    combo_eligible = available[combo_first]

    def probabilities(policy: RoutingPolicy) -> np.ndarray:
        return policy.selection_probabilities(combo_contexts, universe, combo_eligible)[combo_codes.ravel()]

    targets = {"candidate": probabilities(candidate)}
    calibration = {"candidate": ope.calibration(cand_scores, data)}
    if champion is not None:
        champ_scores = _aligned_scores(champion, contexts, universe)[0][ctx_codes]
        targets["champion"] = probabilities(champion)
        calibration["champion"] = ope.calibration(champ_scores, data)
        baseline, kind = "champion", "champion"
    else:
        targets["uniform_random"] = ope.uniform_policy(available)
        baseline, kind = "uniform_random", "uniform_random"
    evaluation = ope.evaluate_policies(
        data,
        targets,
        reward_model=cand_scores,
        reference=baseline,
        n_bootstrap=n_bootstrap,
        seed=seed,
        min_propensity_coverage=min_propensity_coverage,
        confidence=confidence,
        max_weight=max_weight,
    )
    for name, probs in targets.items():  # the top-k lists as served, replayed (logged per cycle)
        evaluation.diagnostics.setdefault(name, {}).update(ope.top_k_metrics(data, probs, top_k))
    gate = eval_gate(
        evaluation,
        "candidate",
        baseline,
        kind,
        min_improvement=min_improvement,
        max_regression=max_regression,
        min_relative_improvement=min_relative_improvement,
        min_events=min_events,
        min_effective_sample_size=min_effective_sample_size,
    )
    kept = targets if keep_targets else {}
    return CycleEvaluation(evaluation, gate, calibration, universe, data.n, target_probabilities=kept)
