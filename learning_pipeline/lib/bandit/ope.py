"""Off-policy evaluation of routing policies on logged outcome events (vectorized numpy).

A routing policy maps an event's (task_type, context) to a distribution over agents. The logged
events say which agent the live router chose (`selection_propensity` = the probability it chose it)
and how that went (reward in [0, 1]). From them we estimate the success rate a *different* policy
would have had, without running it.

Notation (the shapes every function here takes): n held-out events i with context x_i, k agents;
logged action a_i (``actions``, (n,) ints in [0, k)), reward r_i in [0, 1] (``rewards``, (n,)), logging
propensity p_i = pi_0(a_i | x_i) in (0, 1] or NaN when not logged (``propensities``, (n,)); a target
policy's probabilities pi(a | x_i) (``target_probs``, (n, k), rows summing to 1) and a reward model
q(x_i, a) (``reward_model``, (n, k)). w_i = pi(a_i | x_i) / p_i is the importance weight; P is the set of
the n_P events with a propensity.

- ``ips``     inverse propensity scoring (Horvitz & Thompson 1952):
                  V_IPS = (1 / n_P) sum_{i in P} w_i r_i.
              Unbiased when the propensities are right; high variance when w is large.
- ``snips``   self-normalized IPS (Swaminathan & Joachims 2015):
                  V_SNIPS = sum_{i in P} w_i r_i / sum_{i in P} w_i.
              Slightly biased, much lower variance.
- ``dr``      doubly robust (Dudik, Langford & Li 2011):
                  V_DR = (1 / n_P) sum_{i in P} [ sum_a pi(a | x_i) q(x_i, a) + w_i (r_i - q(x_i, a_i)) ].
              Unbiased if either the propensities or the reward model are right; lowest variance of
              the three when the reward model is decent.
- ``replay``  (no propensities; Li, Chu, Langford & Wang 2011):
                  V_replay = sum_i pi(a_i | x_i) r_i / sum_i pi(a_i | x_i),
              the mean reward over events where the logged action is the one the policy picks
              (weighted by pi(a_i | x_i) for stochastic policies). Unbiased only when the logging
              policy chose uniformly at random among the candidates (over one fixed set of agents it
              then equals SNIPS); labelled as such.
- ``dm``      direct method (no propensities needed; Beygelzimer & Langford 2009):
                  V_DM = (1 / n) sum_i sum_a pi(a | x_i) q(x_i, a).
              Only as good as the reward model; labelled as model-based.

Weight clipping (Ionides 2008; Bottou et al. 2013): IPS, SNIPS and DR use w_i = min(pi(a_i | x_i) / p_i,
``max_weight``) (default ``DEFAULT_MAX_WEIGHT`` = 100; ``None`` turns clipping off). A clipped weight trades a
small downward bias for bounded variance when a logging propensity is tiny. Every evaluation reports per
policy (``PolicyEvaluation.diagnostics``): ``ess`` = (sum w)^2 / sum w^2, the Kish effective sample size of
the weights actually used, ``ess_share`` = ess / n_P, ``max_weight`` (the largest weight before clipping),
``clipped_share`` (share of the n_P events whose weight was clipped), and ``replay_ess``, the Kish effective
sample size of the replay weights pi(a_i | x_i). The weights are the same for IPS, SNIPS and DR, so one
set of diagnostics per policy serves the three estimators.

Every estimator is a ratio of two sums of per-event terms, so one bootstrap serves all: events are
split into at most ``max_groups`` random groups, per-group sums are resampled with multinomial counts
(exact iid bootstrap when n <= max_groups, a random-block bootstrap otherwise), with a fixed seed.
Policies evaluated together share the resamples, so their *difference* has a paired interval.

Which estimator the eval gate uses (``gate_estimator``): ``dr`` when at least ``min_coverage`` of the
held-out events carry a propensity (unbiased under correct propensities, lowest variance, and its
reward model is fitted only on events before the cut-off), otherwise ``replay`` (model-free; the DM
would let a policy grade itself with its own reward model).

References
----------
- Daniel G. Horvitz and Donovan J. Thompson. "A Generalization of Sampling Without Replacement from a
  Finite Universe." Journal of the American Statistical Association 47(260), 1952.
- Lihong Li, Wei Chu, John Langford, and Xuanhui Wang. "Unbiased Offline Evaluation of
  Contextual-bandit-based News Article Recommendation Algorithms." WSDM, 2011.
- Miroslav Dudik, John Langford, and Lihong Li. "Doubly Robust Policy Evaluation and Learning." ICML, 2011.
- Adith Swaminathan and Thorsten Joachims. "The Self-Normalized Estimator for Counterfactual Learning."
  NeurIPS, 2015.
- Alina Beygelzimer and John Langford. "The Offset Tree for Learning with Partial Labels." KDD, 2009.
- Edward L. Ionides. "Truncated Importance Sampling." Journal of Computational and Graphical Statistics
  17(2), 2008.
- Leon Bottou et al. "Counterfactual Reasoning and Learning Systems." JMLR 14, 2013 (clipped weights, ESS).
- Leslie Kish. "Survey Sampling." Wiley, 1965 (effective sample size of weights).
- Bradley Efron and Robert J. Tibshirani. "An Introduction to the Bootstrap." Chapman & Hall, 1993.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

ESTIMATOR_LABELS = {
    "ips": "inverse propensity scoring (needs logged propensities)",
    "snips": "self-normalized IPS (needs logged propensities)",
    "dr": "doubly robust: IPS correction of the direct method (needs logged propensities)",
    "replay": "replay: matching logged actions only, no propensities (unbiased only for uniform logging)",
    "dm": "direct method: reward-model prediction, no propensities (model-based, can be biased)",
}
PROPENSITY_ESTIMATORS = ("ips", "snips", "dr")
DEFAULT_MAX_WEIGHT = 100.0  # importance weights above this are clipped (IPS, SNIPS, DR)

# Rewards come in as numbers: the rule that turns outcomes into rewards lives in one place, the staging
# model `stg_outcome_events.sql` (read by `lib/learning/data.py`).


@dataclass(frozen=True)
class LoggedData:
    """Held-out events as arrays: `actions` index into `agents`; `propensities` NaN where unknown.

    agents: k names. actions: (n,) ints in [0, k). rewards: (n,) floats in [0, 1]. propensities: (n,)
    floats in (0, 1], NaN where the event carries none.
    """

    agents: tuple[str, ...]
    actions: np.ndarray  # int, (n,)
    rewards: np.ndarray  # float in [0, 1], (n,)
    propensities: np.ndarray  # float in (0, 1] or NaN, (n,)

    def __post_init__(self):
        for name in ("actions", "rewards", "propensities"):
            if np.ndim(getattr(self, name)) != 1:
                raise ValueError(f"{name} must be a 1-D array of shape (n,)")
        if not np.issubdtype(np.asarray(self.actions).dtype, np.integer):
            raise ValueError("actions must be integer indices into agents")
        n = len(self.actions)
        if len(self.rewards) != n or len(self.propensities) != n:
            raise ValueError("actions, rewards and propensities must have the same length")
        if n and (self.actions.min() < 0 or self.actions.max() >= len(self.agents)):
            raise ValueError("action index out of range of agents")
        if n and (np.nanmin(self.rewards) < 0 or np.nanmax(self.rewards) > 1 or np.isnan(self.rewards).any()):
            raise ValueError("rewards must be in [0, 1] with no missing values")
        p = self.propensities[~np.isnan(self.propensities)]
        if p.size and (p.min() <= 0 or p.max() > 1):
            raise ValueError("propensities must be in (0, 1]")

    @property
    def n(self) -> int:
        return len(self.actions)

    @property
    def propensity_coverage(self) -> float:
        return float((~np.isnan(self.propensities)).mean()) if self.n else 0.0

    @classmethod
    def from_columns(cls, agent_name, reward, propensity=None, agents=None) -> LoggedData:
        """From event columns: agent names (n,), rewards (n,), optional propensities (n,), optional agent
        list (default: the distinct logged names, sorted)."""
        agent_name = np.asarray(agent_name, dtype=object).astype(str)
        universe = tuple(agents) if agents is not None else tuple(np.unique(agent_name).tolist())
        actions = pd.Categorical(agent_name, categories=list(universe)).codes.astype(np.int64)
        if (actions < 0).any():
            missing = sorted(set(agent_name[actions < 0].tolist()))[:5]
            raise ValueError(f"logged agents missing from the agent list: {missing}")
        prop = (
            np.full(len(agent_name), np.nan)
            if propensity is None
            else np.asarray(propensity, dtype=float).copy()
        )
        return cls(universe, actions, np.asarray(reward, dtype=float), prop)


@dataclass
class Estimate:
    estimator: str
    value: float
    ci_low: float
    ci_high: float
    n: int  # events contributing (replay: matched events; others: all events used)
    label: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class PolicyEvaluation:
    """Estimates of one or more policies' values, plus paired differences against a reference."""

    estimates: dict[str, dict[str, Estimate]]  # policy -> estimator -> Estimate
    differences: dict[str, dict[str, Estimate]] = field(default_factory=dict)  # policy - reference
    reference: str | None = None
    gate_estimator: str = "replay"
    n_events: int = 0
    propensity_coverage: float = 0.0
    n_bootstrap: int = 0
    confidence: float = 0.95
    # policy -> ess, ess_share, max_weight, clipped_share, replay_ess (see the module docstring)
    diagnostics: dict[str, dict[str, float]] = field(default_factory=dict)
    max_weight: float | None = DEFAULT_MAX_WEIGHT

    def value(self, policy: str, estimator: str | None = None) -> Estimate:
        return self.estimates[policy][estimator or self.gate_estimator]

    def difference(self, policy: str, estimator: str | None = None) -> Estimate:
        return self.differences[policy][estimator or self.gate_estimator]

    def flat_metrics(self) -> dict[str, float]:
        """`<policy>.<estimator>[_ci_low|_ci_high|_n]` -> value, for MLflow metrics and tables."""
        out: dict[str, float] = {}
        for policy, by_est in self.estimates.items():
            for name, est in by_est.items():
                out[f"{policy}.{name}"] = est.value
                out[f"{policy}.{name}_ci_low"] = est.ci_low
                out[f"{policy}.{name}_ci_high"] = est.ci_high
                out[f"{policy}.{name}_n"] = float(est.n)
        for policy, by_est in self.differences.items():
            for name, est in by_est.items():
                out[f"{policy}_minus_{self.reference}.{name}"] = est.value
                out[f"{policy}_minus_{self.reference}.{name}_ci_low"] = est.ci_low
                out[f"{policy}_minus_{self.reference}.{name}_ci_high"] = est.ci_high
        for policy, diag in self.diagnostics.items():
            for name, value in diag.items():
                out[f"{policy}.{name}"] = value
        return out

    def effective_sample_size(self, policy: str, estimator: str | None = None) -> float:
        """Kish ESS of the weights behind `policy`'s estimate: importance weights for IPS/SNIPS/DR, the
        replay weights for replay, n for the direct method; NaN when no diagnostics were computed."""
        est = estimator or self.gate_estimator
        diag = self.diagnostics.get(policy, {})
        if est in PROPENSITY_ESTIMATORS:
            return float(diag.get("ess", float("nan")))
        if est == "replay":
            return float(diag.get("replay_ess", float("nan")))
        return float(self.n_events)


def choose_gate_estimator(propensity_coverage: float, min_coverage: float = 0.95) -> str:
    """DR when (nearly) every held-out event has a propensity, else replay. See the module docstring."""
    return "dr" if propensity_coverage >= min_coverage else "replay"


def _check_probs(target_probs: np.ndarray, n: int, k: int, name: str) -> np.ndarray:
    """Target probabilities pi(a | x_i) as an (n, k) float array whose rows are distributions."""
    probs = np.asarray(target_probs, dtype=float)
    if probs.shape != (n, k):
        raise ValueError(f"{name}: target probabilities must have shape ({n}, {k}), got {probs.shape}")
    if n and (probs.min() < -1e-12 or np.abs(probs.sum(axis=1) - 1).max() > 1e-6):
        raise ValueError(f"{name}: each row of target probabilities must be a distribution over agents")
    return probs


def _kish(weights: np.ndarray) -> float:
    """Kish effective sample size (sum w)^2 / sum w^2 of non-negative weights (n,); 0 when all are 0."""
    sq = float(np.square(weights).sum())
    return float(weights.sum()) ** 2 / sq if sq > 0 else 0.0


def weight_diagnostics(
    data: LoggedData, probs: np.ndarray, max_weight: float | None = DEFAULT_MAX_WEIGHT
) -> dict[str, float]:
    """ess, ess_share, max_weight (before clipping), clipped_share of the importance weights
    pi(a_i | x_i) / p_i over the events with a propensity, and replay_ess of pi(a_i | x_i) over all
    events; probs: (n, k) target probabilities. See the module docstring."""
    pi_a = probs[np.arange(data.n), data.actions]
    out = {"replay_ess": _kish(pi_a)}
    with_prop = ~np.isnan(data.propensities)
    if with_prop.any():
        raw = pi_a[with_prop] / data.propensities[with_prop]
        cap = np.inf if max_weight is None else max_weight
        used = np.minimum(raw, cap)
        ess = _kish(used)
        out.update(
            ess=ess,
            ess_share=ess / len(raw),
            max_weight=float(raw.max()),
            clipped_share=float((raw > cap).mean()),
        )
    return out


def _terms(
    data: LoggedData,
    probs: np.ndarray,
    reward_model: np.ndarray | None,
    with_propensity: np.ndarray,
    max_weight: float | None = DEFAULT_MAX_WEIGHT,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-event (numerator, denominator) terms, each (n,); each estimator = sum(num) / sum(den).

    replay: (pi_a r, pi_a); dm: (sum_a pi q, 1); with propensities (m_i = 1 for i in P, else 0) and the
    clipped weight w = min(pi_a / p, max_weight): ips: (m w r, m); snips: (m w r, m w);
    dr: (m (dm + w (r - q_a)), m). See the module docstring.
    """
    n = data.n
    rows = np.arange(n)
    pi_a = probs[rows, data.actions]
    r = data.rewards
    ones = np.ones(n)
    terms: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "replay": (pi_a * r, pi_a),
    }
    if reward_model is not None:
        dm = (probs * reward_model).sum(axis=1)
        terms["dm"] = (dm, ones)
    if with_propensity.any():
        m = with_propensity.astype(float)
        p = np.where(with_propensity, data.propensities, 1.0)
        w = m * pi_a / p
        if max_weight is not None:
            w = np.minimum(w, max_weight)
        terms["ips"] = (w * r, m)
        terms["snips"] = (w * r, w)
        if reward_model is not None:
            q_a = reward_model[rows, data.actions]
            terms["dr"] = (m * (dm + w * (r - q_a)), m)
    return terms


def _bootstrap_sums(
    columns: np.ndarray, n_bootstrap: int, seed: int, max_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Point sums (c,) and bootstrap sums (B, c) of per-event columns (n, c).

    Percentile bootstrap (Efron & Tibshirani 1993) of the sums: the n events go to at most `max_groups`
    random groups (one event per group when n <= max_groups: the plain iid bootstrap), and each of the B
    resamples draws the groups with multinomial counts.
    """
    n, c = columns.shape
    rng = np.random.default_rng(seed)
    totals = columns.sum(axis=0)
    if n == 0 or n_bootstrap <= 0:
        return totals, np.empty((0, c))
    if n <= max_groups:
        groups, g = columns, n
    else:
        g = max_groups
        assign = rng.integers(0, g, size=n)
        groups = np.stack([np.bincount(assign, weights=columns[:, j], minlength=g) for j in range(c)], axis=1)
    counts = rng.multinomial(g, np.full(g, 1.0 / g), size=n_bootstrap).astype(float)
    return totals, counts @ groups


def evaluate_policies(
    data: LoggedData,
    target_probs: dict[str, np.ndarray],
    reward_model: np.ndarray | None = None,
    reference: str | None = None,
    n_bootstrap: int = 500,
    confidence: float = 0.95,
    seed: int = 0,
    max_groups: int = 4096,
    min_propensity_coverage: float = 0.95,
    max_weight: float | None = DEFAULT_MAX_WEIGHT,
) -> PolicyEvaluation:
    """Estimate each target policy's value with every applicable estimator, with bootstrap intervals.

    Parameters
    ----------
    data: the n logged events (k agents).
    target_probs: policy name -> (n, k) probabilities pi(a | x_i) over `data.agents` (one-hot for a
        deterministic top-1 policy).
    reward_model: (n, k) predicted reward q(x_i, a) per event and agent (for DR and DM), fitted on data
        that does not include these events; clipped to [0, 1].
    reference: a policy name; differences `policy - reference` get paired intervals from the same
        resamples.
    n_bootstrap: B resamples (0: no intervals). confidence: the interval's mass, in [0, 1]. seed: of the
        resamples. max_groups >= 1: see `_bootstrap_sums`. min_propensity_coverage: see the gate.
    max_weight: importance weights are clipped to it for IPS, SNIPS and DR (None: no clipping).

    Returns
    -------
    PolicyEvaluation: per policy and estimator an `Estimate` (value, ci_low, ci_high, contributing
    events); with a reference, the paired differences; the gate estimator; per policy the weight
    diagnostics (ESS, max weight, clipped share).
    """
    n, k = data.n, len(data.agents)
    if n == 0:
        raise ValueError("no held-out events to evaluate on")
    if not 0 <= confidence <= 1:
        raise ValueError("confidence must be within [0, 1]")
    if max_groups < 1:
        raise ValueError("max_groups must be >= 1")
    if max_weight is not None and not max_weight > 0:
        raise ValueError("max_weight must be > 0 (or None for no clipping)")
    if reward_model is not None:
        reward_model = np.clip(np.asarray(reward_model, dtype=float), 0.0, 1.0)
        if reward_model.shape != (n, k):
            raise ValueError(f"reward model must have shape ({n}, {k}), got {reward_model.shape}")
    with_prop = ~np.isnan(data.propensities)
    names = list(target_probs)
    checked = {name: _check_probs(target_probs[name], n, k, name) for name in names}
    per_policy = {name: _terms(data, checked[name], reward_model, with_prop, max_weight) for name in names}
    diagnostics = {name: weight_diagnostics(data, checked[name], max_weight) for name in names}
    layout: list[tuple[str, str]] = [(p, e) for p in names for e in per_policy[p]]
    cols = np.empty((n, 2 * len(layout)))
    for j, (p, e) in enumerate(layout):
        cols[:, 2 * j], cols[:, 2 * j + 1] = per_policy[p][e]
    totals, boot = _bootstrap_sums(cols, n_bootstrap, seed, max_groups)
    lo_q, hi_q = (1 - confidence) / 2, 1 - (1 - confidence) / 2

    def ratio(num, den):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)

    point = ratio(totals[0::2], totals[1::2])
    samples = ratio(boot[:, 0::2], boot[:, 1::2]) if len(boot) else np.empty((0, len(layout)))

    def interval(s: np.ndarray, fallback: float) -> tuple[float, float]:
        s = s[~np.isnan(s)]
        if s.size == 0:
            return fallback, fallback
        return float(np.quantile(s, lo_q)), float(np.quantile(s, hi_q))

    def contributing(p: str, e: str) -> int:
        num, den = per_policy[p][e]
        if e == "replay":
            return int((den > 0).sum())
        if e in PROPENSITY_ESTIMATORS:
            return int(with_prop.sum())
        return n

    estimates: dict[str, dict[str, Estimate]] = {p: {} for p in names}
    col_of = {}
    for j, (p, e) in enumerate(layout):
        col_of[(p, e)] = j
        lo, hi = interval(samples[:, j], float(point[j]))
        estimates[p][e] = Estimate(e, float(point[j]), lo, hi, contributing(p, e), ESTIMATOR_LABELS[e])
    differences: dict[str, dict[str, Estimate]] = {}
    if reference is not None:
        if reference not in per_policy:
            raise ValueError(f"reference policy {reference!r} not among {names}")
        for p in names:
            if p == reference:
                continue
            differences[p] = {}
            for e in per_policy[p]:
                if (reference, e) not in col_of:
                    continue
                a, b = col_of[(p, e)], col_of[(reference, e)]
                d_point = float(point[a] - point[b])
                lo, hi = interval(samples[:, a] - samples[:, b], d_point)
                differences[p][e] = Estimate(e, d_point, lo, hi, contributing(p, e), ESTIMATOR_LABELS[e])
    coverage = data.propensity_coverage
    gate = choose_gate_estimator(coverage, min_propensity_coverage)
    if gate == "dr" and reward_model is None:
        gate = "snips"
    return PolicyEvaluation(
        estimates=estimates,
        differences=differences,
        reference=reference,
        gate_estimator=gate,
        n_events=n,
        propensity_coverage=coverage,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        diagnostics=diagnostics,
        max_weight=max_weight,
    )


def top_k_metrics(data: LoggedData, probs: np.ndarray, k: int = 3) -> dict[str, float]:
    """The top-k list as the API serves it, replayed on logged events; probs: (n, k_agents) pi(a | x_i).

    The API draws the first agent from pi and lists the others by descending probability (ties: agent
    order). The logged agent a_i with 0-based rank r_i in that order is therefore in the served list with
    probability  c_i = 1 if r_i < k - 1;  sum of the k largest pi(. | x_i) if r_i = k - 1;  pi(a_i | x_i)
    otherwise  (for k = 1, c_i = pi(a_i | x_i), the replay weight). Returns, with k in the names:
    ``top{k}_hit_rate`` = mean c_i (share of events whose agent the list offers), ``top{k}_replay`` =
    sum c_i r_i / sum c_i (mean reward of the offered agents, replay-style; unbiased for uniform logging
    only) and ``top{k}_success_recall`` = mean c_i over the events with reward 1.
    """
    n, m = probs.shape
    k = max(1, min(int(k), m))
    rows = np.arange(n)
    order = np.argsort(-probs, axis=1, kind="stable")
    rank = np.empty_like(order)
    rank[rows[:, None], order] = np.arange(m)
    r_a = rank[rows, data.actions]
    top_mass = np.take_along_axis(probs, order[:, :k], axis=1).sum(axis=1)
    pi_a = probs[rows, data.actions]
    c = np.where(r_a < k - 1, 1.0, np.where(r_a == k - 1, top_mass, pi_a))
    success = data.rewards >= 1.0
    return {
        f"top{k}_hit_rate": float(c.mean()) if n else float("nan"),
        f"top{k}_replay": float((c * data.rewards).sum() / c.sum()) if c.sum() > 0 else float("nan"),
        f"top{k}_success_recall": float(c[success].mean()) if success.any() else float("nan"),
    }


def one_hot(choice: np.ndarray, k: int) -> np.ndarray:
    """Deterministic policy probabilities from chosen action indices (n,) -> (n, k)."""
    choice = np.asarray(choice)
    if choice.ndim != 1 or not np.issubdtype(choice.dtype, np.integer):
        raise ValueError("choice must be a 1-D array of integer action indices")
    if len(choice) and (choice.min() < 0 or choice.max() >= k):
        raise ValueError(f"action indices must be within [0, {k})")
    out = np.zeros((len(choice), k))
    out[np.arange(len(choice)), choice] = 1.0
    return out


def uniform_policy(available: np.ndarray) -> np.ndarray:
    """Uniform-random policy over the available agents of each event; available is a bool (n, k) mask."""
    avail = np.asarray(available, dtype=float)
    if avail.ndim != 2:
        raise ValueError("available must be an (n, k) mask")
    counts = avail.sum(axis=1, keepdims=True)
    if (counts == 0).any():
        raise ValueError("every event needs at least one available agent")
    return avail / counts


def _same_shape(predicted: np.ndarray, outcome: np.ndarray) -> None:
    if np.shape(predicted) != np.shape(outcome):
        raise ValueError(
            f"predictions {np.shape(predicted)} and outcomes {np.shape(outcome)} differ in shape"
        )


def brier_score(predicted: np.ndarray, outcome: np.ndarray) -> float:
    """Mean squared error (1/n) sum_i (p_i - y_i)^2 of predicted success probabilities p (n,) against
    outcomes y (n,) in [0, 1]; NaN for no events."""
    _same_shape(predicted, outcome)
    p = np.asarray(predicted, dtype=float)
    y = np.asarray(outcome, dtype=float)
    return float(np.mean((p - y) ** 2)) if p.size else float("nan")


def log_loss(predicted: np.ndarray, outcome: np.ndarray, eps: float = 1e-6) -> float:
    """Cross-entropy -(1/n) sum_i [y_i log p_i + (1 - y_i) log(1 - p_i)] of predicted success
    probabilities p (n,), clipped to [eps, 1 - eps], against outcomes y (n,) in [0, 1] (partials are
    fractional); NaN for no events."""
    _same_shape(predicted, outcome)
    p = np.clip(np.asarray(predicted, dtype=float), eps, 1 - eps)
    y = np.asarray(outcome, dtype=float)
    if not p.size:
        return float("nan")
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def calibration(reward_model: np.ndarray, data: LoggedData) -> dict[str, float]:
    """Brier score and log loss of the predicted success probability q(x_i, a_i) of the agent actually
    chosen; reward_model: (n, k) over `data.agents`."""
    if np.shape(reward_model) != (data.n, len(data.agents)):
        raise ValueError(
            f"reward model must have shape ({data.n}, {len(data.agents)}), got {np.shape(reward_model)}"
        )
    q_a = np.asarray(reward_model)[np.arange(data.n), data.actions]
    return {"brier": brier_score(q_a, data.rewards), "log_loss": log_loss(q_a, data.rewards)}
