"""Routing policies: trained on events before a cut-off, evaluated off-policy on events after it, gated.

A `RoutingPolicy` is the one object that is registered, evaluated, shadowed and served. For a request
(task_type, context, eligible agents) it scores every agent and selects one with the probabilities of
`exploration.selection_probabilities`: Thompson sampling over the scores with each agent's posterior
uncertainty, plus an exploration floor. The gate evaluates exactly those probabilities; the API samples
from them and logs them as the decision's propensities.

Scores come from the Beta posterior table (`agent_posteriors` contract: one broad row per (task_type, agent)
with context_key = context_value = '*', plus one row per context bucket such as ('complexity', 'high') or the
joint ('complexity&domain', '["high","legal"]')), optionally replaced by a scikit-learn contextual success
model when that model beats the posteriors on a time-based validation split by log loss. Uncertainty always
comes from the posteriors (the evidence behind the score).

Posterior scoring: `thompson.Recommender` (joint context bucket -> single keys -> task level -> pooled
-> prior, each bucket answering only with `min_context_evidence` events, param of the version).
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

from learning_pipeline.lib.bandit import contexts, exploration, online, ope, thompson
from learning_pipeline.lib.bandit import gate as gate_rules
from learning_pipeline.lib.bandit.encoding import candidate_mask, encode, factorize_rows
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
            post,
            alpha0=alpha0,
            beta0=beta0,
            agents=self.agents,
            context_keys=self.context_keys,
            min_evidence=float(self.params.get("min_context_evidence", contexts.DEFAULT_MIN_EVIDENCE)),
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
        codes, uniques = factorize_rows(ctx)
        return self.score_contexts(uniques)[codes]

    def evidence_rows(self, contexts: pd.DataFrame) -> np.ndarray:
        """(m,) resolved posterior row of each (task_type, context) row: where online evidence is kept."""
        return self._recommender.resolve_batch(self._contexts_frame(contexts))

    @property
    def evidence_shape(self) -> tuple[int, int]:
        return self._recommender.alpha.shape

    def beliefs(
        self, contexts: pd.DataFrame, evidence: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(m, k) score and uncertainty per row and agent: the trained score with the resolved Beta
        posterior's sd, or, with online `evidence` (s, f), both updated by `online.update`."""
        rows = self.evidence_rows(contexts)
        alpha, beta = self._recommender.alpha[rows], self._recommender.beta[rows]
        mean = self.score_contexts(contexts)
        if evidence is None:
            return mean, exploration.beta_sd(alpha, beta)
        return online.update(mean, alpha + beta, *evidence)

    def online_outcomes(self, outcomes: pd.DataFrame) -> tuple[np.ndarray, ...]:
        """Outcomes (task_type, context keys, agent_name, reward, timestamp) as this version's online evidence:
        those since its cut-off, as resolved rows, agent indices (-1: unknown agent), rewards and epochs."""
        since = self.params.get("cutoff")
        if since is not None and len(outcomes):
            stamps = pd.to_datetime(outcomes["timestamp"], utc=True)
            outcomes = outcomes[(stamps >= pd.Timestamp(since, tz="UTC")).to_numpy()]
        agents = pd.Categorical(outcomes["agent_name"].astype(str), categories=list(self.agents)).codes
        return (
            self.evidence_rows(outcomes),
            agents.astype(np.int64),
            outcomes["reward"].to_numpy(float),
            online.epochs(outcomes["timestamp"], self.online_epoch_seconds),
        )

    @property
    def online_epoch_seconds(self) -> float:
        """Epoch of online evidence (`online`); 0 = a frozen policy."""
        return float(self.params.get(online.PARAM, 0.0))

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
        self,
        contexts: pd.DataFrame,
        universe: tuple[str, ...],
        eligible: np.ndarray,
        evidence: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """(m, U) probability of selecting each agent of `universe` for m (task_type, context) rows.

        eligible: (m, U) bool, the agents each request may be routed to. evidence: online (s, f), each
        (m, k) over this policy's agents, or None (frozen). Agents unknown to this policy score its prior
        mean with the prior's uncertainty. The same request gives the same probabilities whatever the
        universe's order or the other rows: see `exploration`.
        """
        mean = np.full((len(contexts), len(universe)), self.prior_mean)
        sd = np.full_like(mean, self.prior_sd)
        pos = {a: i for i, a in enumerate(universe)}
        mine = [i for i, a in enumerate(self.agents) if a in pos]
        cols = np.array([pos[self.agents[i]] for i in mine], dtype=int)
        if len(cols):
            own_mean, own_sd = self.beliefs(contexts, evidence)
            mean[:, cols], sd[:, cols] = own_mean[:, mine], own_sd[:, mine]
        return exploration.selection_probabilities(mean, sd, eligible, tuple(universe), self.exploration)

    def decide(
        self, requests: pd.DataFrame, evidence: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
        """Universe, (m, U) selection probabilities and (m, U) eligibility for request rows.

        requests: task_type, context key columns, optional `candidate_agents` (list or None per row). Without
        candidates a request may go to the agents with evidence for its task type (all for an unknown one).
        evidence: online (s, f) per request row, see `selection_probabilities`.
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
        return universe, self.selection_probabilities(requests, universe, eligible, evidence), eligible

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


def _replayed_probabilities(
    policy: RoutingPolicy,
    events: pd.DataFrame,
    evidence: pd.DataFrame | None,
    contexts: pd.DataFrame,
    ctx_codes: np.ndarray,
    universe: tuple[str, ...],
    available: np.ndarray,
) -> np.ndarray:
    """(n, U) probabilities of an online-learning policy for each event, with the evidence it had then."""
    decided = events["timestamp"]
    if "decided_at" in events.columns:
        decided = events["decided_at"].where(events["decided_at"].notna(), events["timestamp"])
    rows = policy.evidence_rows(contexts)[ctx_codes]
    s, f = online.replay_counts(
        *policy.online_outcomes(events if evidence is None else evidence),
        rows,
        online.epochs(decided, policy.online_epoch_seconds),
        len(policy.agents),
    )
    # one computation per distinct (context, eligible set, evidence), broadcast to the events
    key = np.column_stack([ctx_codes, np.packbits(available, axis=1), s, f])
    _, first, codes = np.unique(key, axis=0, return_index=True, return_inverse=True)
    unique = policy.selection_probabilities(
        contexts.iloc[ctx_codes[first]].reset_index(drop=True),
        universe,
        available[first],
        (s[first], f[first]),
    )
    return unique[codes.ravel()]


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
    evidence: pd.DataFrame | None = None,
) -> CycleEvaluation:
    """Evaluate candidate vs champion (or uniform random when there is none) on held-out events.

    events: columns task_type, <context keys>, agent_name, reward, selection_propensity (optional).
    candidate_agents: the events' candidate lists (Arrow list array or sequence; None = not logged), else
    an events column of that name is used. The gate settings are those of `gate.eval_gate`; max_weight
    clips the importance weights (`ope.evaluate_policies`); top_k: the served list length replayed per
    policy (`ope.top_k_metrics`, in the evaluation's diagnostics).

    A policy that learns online (`online_epoch_seconds` > 0) is replayed as served: each event is decided
    with the evidence of the outcomes (`evidence`: task_type, context keys, agent_name, reward, timestamp;
    default the events themselves) since the policy's `cutoff` day from epochs before the event's
    decision (`decided_at`, else its `timestamp`); see `online`.
    """
    if events.empty:
        raise ValueError("no held-out events after the cut-off")
    agent_codes, logged_agents = encode(events["agent_name"])
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
    ctx_codes, contexts = factorize_rows(events[ctx_cols])
    task_codes, task_values = encode(contexts["task_type"])
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
        if policy.online_epoch_seconds > 0:
            return _replayed_probabilities(policy, events, evidence, contexts, ctx_codes, universe, available)
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
