"""The eval gate: accept a candidate routing policy only when the held-out evidence says it is better.

The gate reads the paired difference ``candidate - baseline`` of one estimator (``gate_estimator`` of the
evaluation: doubly robust with propensities, else replay) and its bootstrap interval [L, U]. Rules, in the
order they are checked; the first that fails names the rejection (``GateDecision.rule``):

1. ``no_estimate``        the estimate is not finite (no usable held-out events).
2. ``min_events``         fewer than ``min_events`` events contribute to the estimate.
3. ``min_effective_sample_size``  the Kish effective sample size of the weights behind the candidate's or
                          the baseline's estimate (importance weights for IPS/SNIPS/DR, pi(a_i | x_i) for
                          replay) is below ``min_effective_sample_size``: the weights are too extreme for
                          the interval to be trusted. Skipped when the evaluation carries no diagnostics.
4. ``max_regression``     L < -max_regression: the interval reaches a regression larger than the tolerated
                          one (absolute, in reward units). With ``min_relative_improvement >= 0`` rule 5 is
                          stricter; this rule is the explicit safety floor and the only one that matters
                          for a non-inferiority gate (``min_relative_improvement < 0``).
5. ``min_relative_improvement``  L must exceed both 0 and ``min_relative_improvement * baseline`` (the
                          baseline's estimated value): the improvement is significant at the interval's
                          level *and* large relative to the base rate, so one setting works at a 0.5 %
                          click rate (threshold 0.00005 at the default 0.01) and at an 80 % success rate
                          (threshold 0.008).
6. ``min_improvement``    the point estimate is below an optional absolute floor (default 0: off).

Accepted when every rule holds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from learning_pipeline.lib.bandit import ope

DEFAULT_MIN_RELATIVE_IMPROVEMENT = 0.01
DEFAULT_MAX_REGRESSION = 0.01
DEFAULT_MIN_IMPROVEMENT = 0.0
DEFAULT_MIN_EVENTS = 50
DEFAULT_MIN_EFFECTIVE_SAMPLE_SIZE = 30.0


@dataclass
class GateDecision:
    accepted: bool
    reason: str
    estimator: str
    baseline_kind: str  # "champion" or "uniform_random"
    candidate_score: float
    baseline_score: float
    improvement: float
    improvement_ci_low: float
    improvement_ci_high: float
    min_improvement: float
    max_regression: float
    rule: str = ""  # the rule that failed ("" when accepted), see the module docstring
    relative_improvement: float = float("nan")  # improvement / baseline_score
    min_relative_improvement: float = DEFAULT_MIN_RELATIVE_IMPROVEMENT
    threshold: float = float("nan")  # the lower bound must exceed max(0, min_relative_improvement * baseline)
    n_evaluated: int = 0
    min_events: int = DEFAULT_MIN_EVENTS
    effective_sample_size: float = float("nan")  # min over candidate and baseline
    min_effective_sample_size: float = DEFAULT_MIN_EFFECTIVE_SAMPLE_SIZE
    max_weight: float = float("nan")  # largest importance weight before clipping (candidate, baseline)
    clipped_share: float = float("nan")  # largest share of clipped weights (candidate, baseline)

    def as_dict(self) -> dict:
        return asdict(self)


def eval_gate(
    evaluation: ope.PolicyEvaluation,
    candidate: str = "candidate",
    baseline: str = "champion",
    baseline_kind: str = "champion",
    min_improvement: float = DEFAULT_MIN_IMPROVEMENT,
    max_regression: float = DEFAULT_MAX_REGRESSION,
    min_relative_improvement: float = DEFAULT_MIN_RELATIVE_IMPROVEMENT,
    min_events: int = DEFAULT_MIN_EVENTS,
    min_effective_sample_size: float = DEFAULT_MIN_EFFECTIVE_SAMPLE_SIZE,
) -> GateDecision:
    """Accept iff every rule of the module docstring holds; a rejection names the first that fails."""
    est = evaluation.gate_estimator
    diff = evaluation.difference(candidate, est)
    cand = evaluation.value(candidate, est)
    base = evaluation.value(baseline, est)
    ess = min(evaluation.effective_sample_size(p, est) for p in (candidate, baseline))
    diags = [evaluation.diagnostics.get(p, {}) for p in (candidate, baseline)]
    max_w = max((d.get("max_weight", float("nan")) for d in diags), default=float("nan"))
    clipped = max((d.get("clipped_share", float("nan")) for d in diags), default=float("nan"))
    threshold = max(0.0, min_relative_improvement * base.value) if math.isfinite(base.value) else math.nan
    relative = diff.value / base.value if math.isfinite(base.value) and base.value > 0 else math.nan
    common = dict(
        estimator=est,
        baseline_kind=baseline_kind,
        candidate_score=cand.value,
        baseline_score=base.value,
        improvement=diff.value,
        improvement_ci_low=diff.ci_low,
        improvement_ci_high=diff.ci_high,
        min_improvement=min_improvement,
        max_regression=max_regression,
        relative_improvement=relative,
        min_relative_improvement=min_relative_improvement,
        threshold=threshold,
        n_evaluated=int(diff.n),
        min_events=min_events,
        effective_sample_size=ess,
        min_effective_sample_size=min_effective_sample_size,
        max_weight=max_w,
        clipped_share=clipped,
    )
    interval = f"{diff.value:+.4f} [{diff.ci_low:+.4f}, {diff.ci_high:+.4f}]"

    def reject(rule: str, why: str) -> GateDecision:
        return GateDecision(False, f"{rule}: {why}", rule=rule, **common)

    if not (math.isfinite(diff.value) and math.isfinite(threshold)):
        return reject("no_estimate", f"{est} has no usable held-out events")
    if diff.n < min_events:
        return reject("min_events", f"{diff.n} events contribute to {est}, fewer than {min_events}")
    if math.isfinite(ess) and ess < min_effective_sample_size:
        return reject(
            "min_effective_sample_size",
            f"effective sample size {ess:.1f} of the {est} weights is below {min_effective_sample_size}",
        )
    if diff.ci_low < -max_regression:
        return reject(
            "max_regression",
            f"interval of the improvement {interval} reaches {diff.ci_low:+.4g} < -max_regression "
            f"{max_regression} ({est})",
        )
    if not diff.ci_low > threshold:
        return reject(
            "min_relative_improvement",
            f"lower bound of the improvement {interval} over the {baseline_kind} ({est}) does not exceed "
            f"{threshold:.4g} = max(0, min_relative_improvement {min_relative_improvement} x baseline "
            f"{base.value:.4g})",
        )
    if diff.value < min_improvement:
        return reject(
            "min_improvement",
            f"improvement {diff.value:+.4g} over the {baseline_kind} ({est}) is below min_improvement "
            f"{min_improvement}",
        )
    return GateDecision(
        True,
        f"improvement {interval} over the {baseline_kind} ({est}), relative {relative:+.2%}, lower bound "
        f"above {threshold:.4g}",
        **common,
    )
