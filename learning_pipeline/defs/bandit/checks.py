"""Checks on the bandit assets: unique keys, probabilities in [0, 1], alpha + beta - priors = counted outcomes."""

from learning_pipeline.defs.bandit.assets import read_params
from learning_pipeline.defs.checks import TableCheck, asset_checks, keys, outside
from learning_pipeline.defs.stats.assets import stats_connection

GROUP = ("task_type", "context_key", "context_value")
POSTERIOR_KEYS = (*GROUP, "agent_name")
TOLERANCE = 1e-6


def _posterior_evidence(con, paths) -> tuple[bool, dict]:
    """alpha + beta - priors = counted outcomes (= n_events without decay); n_events adds up to the events."""
    params = read_params(paths)
    a0, b0 = params.get("alpha0", 1.0), params.get("beta0", 1.0)
    no_decay = params.get("decay_factor", 1.0) >= 1.0 and not params.get("as_of")
    t = "agent_posteriors"
    bad_evidence = con.execute(
        f"SELECT count(*) FROM {t} WHERE abs(alpha + beta - ? - ? - (successes + failures + partials)) > ?",
        [a0, b0, TOLERANCE],
    ).fetchone()[0]
    bad_counts = (
        con.execute(
            f"SELECT count(*) FROM {t} WHERE abs(successes + failures + partials - n_events) > ?", [TOLERANCE]
        ).fetchone()[0]
        if no_decay
        else 0
    )
    counted = con.execute(
        f"SELECT coalesce(sum(n_events), 0) FROM {t} WHERE task_type <> '*' AND context_key = '*'"
    ).fetchone()[0]
    expected = con.execute("SELECT count(*) FROM outcome_events").fetchone()[0]
    if params.get("as_of"):
        expected = counted  # a past reference day leaves later events out on purpose
    metadata = {
        "rows_alpha_beta_mismatch": int(bad_evidence),
        "rows_counts_not_n_events": int(bad_counts),
        "n_events": int(counted),
        "outcome_events": int(expected),
    }
    return not bad_evidence and not bad_counts and counted == expected, metadata


BANDIT_CHECKS = asset_checks(
    TableCheck(
        "agent_posteriors_consistent",
        "agent_posteriors",
        "keys not null and unique; mean, interval and P(best) in [0, 1]; P(best) sums to 1 per group; "
        "alpha + beta - alpha0 - beta0 = successes + failures + partials (= n_events without decay); "
        "broad-level n_events adds up to outcome_events",
        blocking=True,
        connect=stats_connection,
        **keys(*POSTERIOR_KEYS),
        rows={
            "probabilities_out_of_range": outside("mean", "ci_low", "ci_high", "p_best")
            + " OR NOT coalesce(ci_low <= mean AND mean <= ci_high, true)"
        },
        groups={"groups_p_best_not_1": (GROUP, f"abs(sum(p_best) - 1) > {TOLERANCE}")},
        measure=_posterior_evidence,
    ),
    TableCheck(
        "agent_recommendations_consistent",
        "agent_recommendations",
        "keys not null and unique; ranks 1..k without gaps; scores in [0, 1]",
        blocking=True,
        connect=stats_connection,
        not_null=(*POSTERIOR_KEYS, "rank"),
        unique={"duplicate_ranks": (*GROUP, "rank"), "duplicate_agents": POSTERIOR_KEYS},
        rows={"scores_out_of_range": outside("score")},
        groups={"rank_gaps": (GROUP, "max(rank) <> count(*)")},
    ),
)
