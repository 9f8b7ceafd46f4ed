"""Checks on the stats assets: keys present and unique, rates in [0, 1], counts reconcile with events."""

from datetime import UTC

import dagster as dg

from learning_pipeline.defs.resources import LakeResource
from learning_pipeline.defs.stats.assets import stats_connection

DAILY_KEYS = "event_date, agent_name, task_type, context_key, context_value"
MART_KEYS = {
    "agent_stats": "agent_name, context_key, context_value, window_name",
    "agent_task_stats": "task_type, agent_name, context_key, context_value, window_name",
}
RATES = ("success_rate", "failure_rate", "partial_rate", "timeout_rate", "reward_rate", "ema_success_rate")


def key_problems(con, table: str, keys: str) -> dict:
    cols = [c.strip() for c in keys.split(",")]
    nulls = con.execute(
        f"SELECT count(*) FROM {table} WHERE " + " OR ".join(f"{c} IS NULL" for c in cols)
    ).fetchone()[0]
    dupes = con.execute(
        f"SELECT count(*) FROM (SELECT {keys} FROM {table} GROUP BY ALL HAVING count(*) > 1)"
    ).fetchone()[0]
    return {"null_keys": int(nulls), "duplicate_keys": int(dupes)}


def _result(structural_ok: bool, counts_ok: bool, metadata: dict) -> dg.AssetCheckResult:
    """Broken keys or rates block downstream (ERROR); counts that lag outcome_events only warn (WARN).

    A count can lag for a moment when a late event re-materializes a day of outcome_events before the
    stats of that day follow; that is staleness, not corruption, and must not stop learning.
    """
    severity = dg.AssetCheckSeverity.ERROR if not structural_ok else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(passed=structural_ok and counts_ok, severity=severity, metadata=metadata)


@dg.asset_check(
    asset="agent_daily_stats",
    blocking=True,
    description="keys not null and unique; "
    "broad-level n_events adds up to the events of the same days in outcome_events",
)
def agent_daily_stats_consistent(lake: LakeResource) -> dg.AssetCheckResult:
    with stats_connection(lake.paths) as con:
        problems = key_problems(con, "agent_daily_stats", DAILY_KEYS)
        counted, expected = con.execute(
            "SELECT (SELECT coalesce(sum(n_events), 0) FROM agent_daily_stats WHERE task_type <> '*' AND context_key = '*'),"
            " (SELECT count(*) FROM outcome_events WHERE event_date IN (SELECT DISTINCT event_date FROM agent_daily_stats))"
        ).fetchone()
        bad_counts = con.execute(
            "SELECT count(*) FROM agent_daily_stats WHERE successes + failures + partials + timeouts <> n_events "
            "OR partial_reward < 0 OR partial_reward > partials"
        ).fetchone()[0]
    return _result(
        not any(problems.values()) and bad_counts == 0,
        counted == expected,
        {
            **problems,
            "n_events_counted": int(counted),
            "outcome_events": int(expected),
            "rows_with_bad_counts": int(bad_counts),
        },
    )


def _mart_check(lake: LakeResource, mart: str) -> dg.AssetCheckResult:
    with stats_connection(lake.paths) as con:
        problems = key_problems(con, mart, MART_KEYS[mart])
        bad_rates = con.execute(
            f"SELECT count(*) FROM {mart} WHERE "
            + " OR ".join(f"NOT coalesce({r} BETWEEN 0 AND 1, true)" for r in RATES)
        ).fetchone()[0]
        broad = "task_type <> '*' AND " if mart == "agent_task_stats" else ""
        counted = con.execute(
            f"SELECT coalesce(sum(executions), 0) FROM {mart} WHERE {broad} context_key = '*' AND window_name = 'all'"
        ).fetchone()[0]
        as_of = con.execute(f"SELECT max(as_of) FROM {mart}").fetchone()[0]
        expected = (
            con.execute(
                "SELECT count(*) FROM outcome_events WHERE event_date <= cast(? AS TIMESTAMPTZ)::DATE",
                [as_of],
            ).fetchone()[0]
            if as_of is not None
            else 0
        )
    return _result(
        not any(problems.values()) and bad_rates == 0,
        counted == expected,
        {
            **problems,
            "rates_outside_0_1": int(bad_rates),
            "executions_all_window": int(counted),
            "outcome_events": int(expected),
        },
    )


@dg.asset_check(
    asset="agent_stats",
    blocking=True,
    description="keys not null and unique; rates in [0, 1]; all-time executions = outcome_events",
)
def agent_stats_consistent(lake: LakeResource) -> dg.AssetCheckResult:
    return _mart_check(lake, "agent_stats")


@dg.asset_check(
    asset="agent_task_stats",
    blocking=True,
    description="keys not null and unique; rates in [0, 1]; all-time executions = outcome_events",
)
def agent_task_stats_consistent(lake: LakeResource) -> dg.AssetCheckResult:
    return _mart_check(lake, "agent_task_stats")


@dg.asset_check(asset="agent_task_stats", description="the newest event in the stats is less than 2 days old")
def agent_task_stats_fresh(lake: LakeResource) -> dg.AssetCheckResult:
    from datetime import datetime

    with stats_connection(lake.paths) as con:
        last = con.execute("SELECT max(last_event_at) FROM agent_task_stats").fetchone()[0]
    age_h = None if last is None else (datetime.now(UTC) - last).total_seconds() / 3600
    return dg.AssetCheckResult(
        passed=age_h is not None and age_h < 48,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"newest_event_age_hours": float(age_h) if age_h is not None else -1.0},
    )


STATS_CHECKS = [
    agent_daily_stats_consistent,
    agent_stats_consistent,
    agent_task_stats_consistent,
    agent_task_stats_fresh,
]
