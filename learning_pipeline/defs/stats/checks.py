"""Checks on the stats assets: keys present and unique, rates in [0, 1], counts reconcile with events.

Broken keys, counts or rates block downstream (ERROR); counts that lag outcome_events only warn (WARN). A
count can lag for a moment when a late event re-materializes a day of outcome_events before the stats of
that day follow; that is staleness, not corruption, and must not stop learning.
"""

from datetime import UTC, datetime

import dagster as dg

from learning_pipeline.defs.checks import TableCheck, asset_checks, keys, outside
from learning_pipeline.defs.stats.assets import stats_connection

DAILY_KEYS = ("event_date", "agent_name", "task_type", "context_key", "context_value")
MART_KEYS = {
    "agent_stats": ("agent_name", "context_key", "context_value", "window_name"),
    "agent_task_stats": ("task_type", "agent_name", "context_key", "context_value", "window_name"),
}
RATES = ("success_rate", "failure_rate", "partial_rate", "timeout_rate", "reward_rate", "ema_success_rate")
FRESH_HOURS = 48


def _daily_counts(con, paths) -> tuple[bool, dict]:
    counted, expected = con.execute(
        "SELECT (SELECT coalesce(sum(n_events), 0) FROM agent_daily_stats WHERE task_type <> '*' AND context_key = '*'),"
        " (SELECT count(*) FROM outcome_events WHERE event_date IN (SELECT DISTINCT event_date FROM agent_daily_stats))"
    ).fetchone()
    return counted == expected, {"n_events_counted": int(counted), "outcome_events": int(expected)}


def _mart_counts(mart: str):
    """All-time executions of the broad rows = outcome_events up to the mart's reference day."""

    def measure(con, paths) -> tuple[bool, dict]:
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
        return counted == expected, {"executions_all_window": int(counted), "outcome_events": int(expected)}

    return measure


def _freshness(con, paths) -> tuple[bool, dict]:
    last = con.execute("SELECT max(last_event_at) FROM agent_task_stats").fetchone()[0]
    age_h = None if last is None else (datetime.now(UTC) - last).total_seconds() / 3600
    return age_h is not None and age_h < FRESH_HOURS, {
        "newest_event_age_hours": float(age_h) if age_h is not None else -1.0
    }


STATS_CHECKS = asset_checks(
    TableCheck(
        "agent_daily_stats_consistent",
        "agent_daily_stats",
        "keys not null and unique; broad-level n_events adds up to the events of the same days in outcome_events",
        blocking=True,
        connect=stats_connection,
        **keys(*DAILY_KEYS),
        rows={
            "rows_with_bad_counts": "successes + failures + partials + timeouts <> n_events "
            "OR partial_reward < 0 OR partial_reward > partials"
        },
        measure=_daily_counts,
        measure_severity=dg.AssetCheckSeverity.WARN,
    ),
    *(
        TableCheck(
            f"{mart}_consistent",
            mart,
            "keys not null and unique; rates in [0, 1]; all-time executions = outcome_events",
            blocking=True,
            connect=stats_connection,
            **keys(*MART_KEYS[mart]),
            rows={"rates_outside_0_1": outside(*RATES)},
            measure=_mart_counts(mart),
            measure_severity=dg.AssetCheckSeverity.WARN,
        )
        for mart in MART_KEYS
    ),
    TableCheck(
        "agent_task_stats_fresh",
        "agent_task_stats",
        "the newest event in the stats is less than 2 days old",
        connect=stats_connection,
        measure=_freshness,
        severity=dg.AssetCheckSeverity.WARN,
    ),
)
