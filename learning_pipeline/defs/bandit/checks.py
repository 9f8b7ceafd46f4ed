"""Checks on the bandit assets: unique keys, probabilities in [0, 1], alpha + beta - priors = counted outcomes."""

import dagster as dg

from learning_pipeline.defs.bandit.assets import read_params
from learning_pipeline.defs.resources import LakeResource
from learning_pipeline.defs.stats.assets import stats_connection

POSTERIOR_KEYS = "task_type, context_key, context_value, agent_name"
TOLERANCE = 1e-6


@dg.asset_check(
    asset="agent_posteriors",
    blocking=True,
    description=(
        "keys not null and unique; mean, interval and P(best) in [0, 1]; P(best) sums to 1 per group; "
        "alpha + beta - alpha0 - beta0 = successes + failures + partials (= n_events without decay); "
        "broad-level n_events adds up to outcome_events"
    ),
)
def agent_posteriors_consistent(lake: LakeResource) -> dg.AssetCheckResult:
    params = read_params(lake.paths)
    a0, b0 = params.get("alpha0", 1.0), params.get("beta0", 1.0)
    no_decay = params.get("decay_factor", 1.0) >= 1.0 and not params.get("as_of")
    with stats_connection(lake.paths) as con:
        t = "agent_posteriors"
        nulls = con.execute(
            f"SELECT count(*) FROM {t} WHERE task_type IS NULL OR context_key IS NULL "
            "OR context_value IS NULL OR agent_name IS NULL"
        ).fetchone()[0]
        dupes = con.execute(
            f"SELECT count(*) FROM (SELECT {POSTERIOR_KEYS} FROM {t} GROUP BY ALL HAVING count(*) > 1)"
        ).fetchone()[0]
        bad_prob = con.execute(
            f"SELECT count(*) FROM {t} WHERE NOT (mean BETWEEN 0 AND 1 AND ci_low BETWEEN 0 AND 1 "
            "AND ci_high BETWEEN 0 AND 1 "
            "AND p_best BETWEEN 0 AND 1 AND ci_low <= mean AND mean <= ci_high)"
        ).fetchone()[0]
        bad_pbest = con.execute(
            f"SELECT count(*) FROM (SELECT sum(p_best) s FROM {t} GROUP BY task_type, context_key, context_value) "
            "WHERE abs(s - 1) > 1e-6"
        ).fetchone()[0]
        bad_evidence = con.execute(
            f"SELECT count(*) FROM {t} WHERE abs(alpha + beta - ? - ? - (successes + failures + partials)) > ?",
            [a0, b0, TOLERANCE],
        ).fetchone()[0]
        bad_counts = (
            con.execute(
                f"SELECT count(*) FROM {t} WHERE abs(successes + failures + partials - n_events) > ?",
                [TOLERANCE],
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
        "null_keys": int(nulls),
        "duplicate_keys": int(dupes),
        "probabilities_out_of_range": int(bad_prob),
        "groups_p_best_not_1": int(bad_pbest),
        "rows_alpha_beta_mismatch": int(bad_evidence),
        "rows_counts_not_n_events": int(bad_counts),
        "n_events": int(counted),
        "outcome_events": int(expected),
    }
    ok = not any([nulls, dupes, bad_prob, bad_pbest, bad_evidence, bad_counts]) and counted == expected
    return dg.AssetCheckResult(passed=ok, metadata=metadata)


@dg.asset_check(
    asset="agent_recommendations",
    blocking=True,
    description="keys not null and unique; ranks 1..k without gaps; scores in [0, 1]",
)
def agent_recommendations_consistent(lake: LakeResource) -> dg.AssetCheckResult:
    with stats_connection(lake.paths) as con:
        t = "agent_recommendations"
        nulls = con.execute(
            f"SELECT count(*) FROM {t} WHERE task_type IS NULL OR context_key IS NULL OR "
            "context_value IS NULL OR agent_name IS NULL OR rank IS NULL"
        ).fetchone()[0]
        dupes = con.execute(
            f"SELECT count(*) FROM (SELECT task_type, context_key, context_value, rank FROM {t} "
            "GROUP BY ALL HAVING count(*) > 1)"
        ).fetchone()[0]
        dupe_agents = con.execute(
            f"SELECT count(*) FROM (SELECT task_type, context_key, context_value, agent_name FROM {t} "
            "GROUP BY ALL HAVING count(*) > 1)"
        ).fetchone()[0]
        gaps = con.execute(
            f"SELECT count(*) FROM (SELECT max(rank) m, count(*) n FROM {t} "
            "GROUP BY task_type, context_key, context_value) WHERE m <> n"
        ).fetchone()[0]
        bad_scores = con.execute(f"SELECT count(*) FROM {t} WHERE NOT (score BETWEEN 0 AND 1)").fetchone()[0]
    metadata = {
        "null_keys": int(nulls),
        "duplicate_ranks": int(dupes),
        "duplicate_agents": int(dupe_agents),
        "rank_gaps": int(gaps),
        "scores_out_of_range": int(bad_scores),
    }
    return dg.AssetCheckResult(passed=not any(metadata.values()), metadata=metadata)


BANDIT_CHECKS = [agent_posteriors_consistent, agent_recommendations_consistent]
