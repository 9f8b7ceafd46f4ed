"""What a learning cycle reads from the lake: daily aggregates and joint cells for training, and the
held-out events for evaluation, joined to the decision log (propensities from `agent_decisions`).

Rewards (`reward_sql`, `rewards`): the SQL macro `reward` (dbt_like_sql/macros/reward.sql), the same rule as
`stg_outcome_events.reward`: the base rule ("graded": success 1, partial its quality score or 0.5, else 0;
"success": the plain success) minus cost and latency penalties weighted per task type, clipped to [0, 1].
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import date
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from learning_pipeline.lib.bandit import thompson
from learning_pipeline.lib.storage.sql_runner import SqlProject, sql_value
from learning_pipeline.lib.storage.warehouse import quote_identifier, sql_literal, table_names

REWARD_RULES = ("graded", "success")
PENALTIES = ("cost", "latency")
_TASK_TYPE = "coalesce(task_type, action_type, 'unspecified')"  # as stg_outcome_events names it
_LATENCY = "coalesce(latency_ms, duration_ms)"

RewardWeights = Mapping[str, Mapping[str, float]]
"""Penalty weights per task type: {"*": {"cost": reward per USD, "latency": reward per second}, "code_review":
{...}}; "*" is the default row, a task type without a row (or a row without a penalty) takes it, else 0."""


def reward_vars(reward_rule: str = "graded", weights: RewardWeights | None = None) -> dict[str, Any]:
    """The SQL vars of the reward macro (stg_outcome_events: reward_rule, reward_task_types,
    reward_cost_weights, reward_latency_weights) for a rule and its weights; raises on a bad rule or weight."""
    if reward_rule not in REWARD_RULES:
        raise ValueError(f"reward_rule must be one of {list(REWARD_RULES)}, not {reward_rule!r}")
    rows = {"*": {}, **{str(t): dict(w) for t, w in (weights or {}).items()}}
    default = rows["*"]
    for task_type, row in rows.items():
        unknown = set(row) - set(PENALTIES)
        if unknown:
            raise ValueError(f"reward weights of {task_type!r}: unknown penalties {sorted(unknown)}")
        for name, value in row.items():
            if not math.isfinite(float(value)) or float(value) < 0:
                raise ValueError(f"reward weight {task_type!r}.{name} must be a finite number >= 0")
    types = list(rows)
    return {
        "reward_rule": reward_rule,
        "reward_task_types": types,
        **{
            f"reward_{name}_weights": [float(rows[t].get(name, default.get(name, 0.0))) for t in types]
            for name in PENALTIES
        },
    }


def reward_sql(reward_rule: str = "graded", weights: RewardWeights | None = None) -> str:
    """The reward of an `outcome_events` row as SQL: the macro `reward` (dbt_like_sql/macros/reward.sql, the
    rule's one home) with the rule and weights as literals; needs the macros on the connection."""
    v = {k: sql_value(x) for k, x in reward_vars(reward_rule, weights).items()}
    return (
        f"reward(status, quality_score, cost_usd, {_LATENCY}, {_TASK_TYPE}, {v['reward_rule']}, "
        f"{v['reward_task_types']}, {v['reward_cost_weights']}, {v['reward_latency_weights']})"
    )


def reward_components_sql(reward_rule: str = "graded", weights: RewardWeights | None = None) -> str:
    """reward_base, cost_penalty and latency_penalty of an `outcome_events` row (select-list SQL)."""
    v = {k: sql_value(x) for k, x in reward_vars(reward_rule, weights).items()}
    types = v["reward_task_types"]
    return (
        f"reward_base(status, quality_score, {v['reward_rule']}) AS reward_base, "
        f"cost_penalty(cost_usd, {_TASK_TYPE}, {types}, {v['reward_cost_weights']}) AS cost_penalty, "
        f"latency_penalty({_LATENCY}, {_TASK_TYPE}, {types}, {v['reward_latency_weights']}) AS latency_penalty"
    )


def with_reward_macros(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """`con` with the project's SQL macros (reward among them) created on it."""
    SqlProject.load().run(con, select=[])
    return con


_REWARD_INPUTS = (
    "status",
    "quality_score",
    "cost_usd",
    "latency_ms",
    "duration_ms",
    "task_type",
    "action_type",
)


def rewards(
    outcomes: pd.DataFrame, reward_rule: str = "graded", weights: RewardWeights | None = None
) -> np.ndarray:
    """(n,) reward of outcome rows (status; quality_score, cost_usd, latency_ms, task_type when present) under
    `reward_rule` and `weights`: the SQL rule, run by DuckDB."""
    numeric = ("quality_score", "cost_usd", "latency_ms", "duration_ms")
    frame = pd.DataFrame(
        {
            c: (pd.to_numeric(outcomes[c], errors="coerce") if c in numeric else outcomes[c].astype(object))
            if c in outcomes.columns
            else (np.nan if c in numeric else None)
            for c in _REWARD_INPUTS
        },
        index=outcomes.index,
    )
    con = with_reward_macros(duckdb.connect())
    try:
        con.register("outcomes", frame)
        sql = f"SELECT {reward_sql(reward_rule, weights)} AS reward FROM outcomes"
        return np.asarray(con.execute(sql).fetchnumpy()["reward"], dtype=float)
    finally:
        con.close()


EVIDENCE_COLUMNS = ["penalized_successes", "success_reward"]


def reward_evidence(daily: pd.DataFrame) -> pd.DataFrame:
    """Daily aggregates as Beta evidence of the reward: a success its penalties took below 1 counts as a
    partial with that reward (thompson's alpha += r, beta += 1 - r), so alpha - alpha0 is the reward sum.
    With zero penalty weights (no penalized successes) the counts are returned unchanged."""
    out = daily.copy()
    moved = out["penalized_successes"].to_numpy(np.int64)
    out["successes"] = out["successes"].to_numpy(np.int64) - moved
    out["partials"] = out["partials"].to_numpy(np.int64) + moved
    out["partial_reward"] = out["partial_reward"].to_numpy(float) + out["success_reward"].to_numpy(float)
    return out


def _context_select(keys: tuple[str, ...]) -> str:
    """Context keys (configuration, so data) as columns: quoted as a JSON path literal and an identifier."""
    return ", ".join(
        f"json_extract_string(context, {sql_literal('$.' + json.dumps(k))}) AS {quote_identifier(k)}"
        for k in keys
    )


def daily_aggregates(
    con: duckdb.DuckDBPyConnection, start: date, end: date, keys: tuple[str, ...]
) -> pd.DataFrame:
    """The `agent_daily_stats` SQL model over [start, end] (inclusive)."""
    cur = con.cursor()
    try:
        SqlProject.load().run(
            cur,
            select=["agent_daily_stats"],
            vars={"start_date": start, "end_date": end, "context_keys": list(keys)},
        )
        return cur.execute('SELECT * FROM "agent_daily_stats"').df()
    finally:
        cur.close()


def joint_cells(
    con, start: date, end: date, keys: tuple[str, ...], reward_rule: str, weights: RewardWeights | None = None
) -> pd.DataFrame:
    """One scan of the events: per (event_date, task_type, context keys..., agent) the counts of
    agent_daily_stats (n_events, successes, failures, partials, timeouts, partial_reward, last_event_at),
    n / reward_sum, the sums of the reward's components (reward_base_sum, cost_penalty_sum,
    latency_penalty_sum) and the EVIDENCE_COLUMNS (`reward_evidence`) under `reward_rule` and `weights`.

    Events are grouped by their raw context text first and the JSON is parsed only for the distinct
    groups (a few thousand instead of millions of rows).
    """
    extract = _context_select(keys)
    cols = ", ".join(quote_identifier(k) for k in keys)
    sql = f"""
        WITH e AS (
            SELECT *, {reward_sql(reward_rule, weights)} AS reward, {reward_components_sql(reward_rule, weights)}
            FROM outcome_events
            WHERE cast(event_date AS DATE) BETWEEN ? AND ?
        ),
        raw AS (
            SELECT cast(event_date AS DATE) AS event_date,
                   coalesce(task_type, action_type, 'unspecified') AS task_type, context, agent_name,
                   count(*) AS n_events,
                   count(*) FILTER (WHERE status = 'success') AS successes,
                   count(*) FILTER (WHERE status = 'failure') AS failures,
                   count(*) FILTER (WHERE status = 'partial') AS partials,
                   count(*) FILTER (WHERE status = 'timeout') AS timeouts,
                   coalesce(sum(reward) FILTER (WHERE status = 'partial'), 0) AS partial_reward,
                   count(*) FILTER (WHERE status = 'success' AND reward < 1) AS penalized_successes,
                   coalesce(sum(reward) FILTER (WHERE status = 'success' AND reward < 1), 0) AS success_reward,
                   sum(reward) AS reward_sum, sum(reward_base) AS reward_base_sum,
                   sum(cost_penalty) AS cost_penalty_sum, sum(latency_penalty) AS latency_penalty_sum,
                   max("timestamp") AS last_event_at
            FROM e
            GROUP BY ALL
        )
        SELECT event_date, task_type, {cols}, agent_name,
               sum(n_events)::BIGINT AS n_events, sum(successes)::BIGINT AS successes,
               sum(failures)::BIGINT AS failures, sum(partials)::BIGINT AS partials,
               sum(timeouts)::BIGINT AS timeouts, sum(partial_reward) AS partial_reward,
               sum(penalized_successes)::BIGINT AS penalized_successes, sum(success_reward) AS success_reward,
               sum(reward_sum) AS reward_sum, sum(reward_base_sum) AS reward_base_sum,
               sum(cost_penalty_sum) AS cost_penalty_sum, sum(latency_penalty_sum) AS latency_penalty_sum,
               max(last_event_at) AS last_event_at
        FROM (SELECT * EXCLUDE (context), {extract} FROM raw)
        GROUP BY ALL
    """
    cells = with_reward_macros(con).execute(sql, [start, end]).df()
    cells["n"] = cells["n_events"]
    return cells


# the counts of thompson.DAILY_COLUMNS (between the keys and last_event_at) and the reward evidence
COUNT_COLUMNS = [*thompson.DAILY_COLUMNS[5:-1], *EVIDENCE_COLUMNS]
_FLOAT_COLUMNS = ("partial_reward", "success_reward")


def reward_components(cells: pd.DataFrame) -> dict[str, float]:
    """Mean reward and mean of each component (base, cost penalty, latency penalty) over the cells' events."""
    n = max(float(cells["n"].sum()), 1.0)
    return {
        "mean_reward": float(cells["reward_sum"].sum()) / n,
        "mean_base": float(cells["reward_base_sum"].sum()) / n,
        "mean_cost_penalty": float(cells["cost_penalty_sum"].sum()) / n,
        "mean_latency_penalty": float(cells["latency_penalty_sum"].sum()) / n,
    }


def daily_from_cells(cells: pd.DataFrame, keys: tuple[str, ...]) -> pd.DataFrame:
    """The daily aggregates of `agent_daily_stats` (thompson.DAILY_COLUMNS + EVIDENCE_COLUMNS) rolled up from
    joint cells.

    The buckets come from the SQL macro `context_buckets` (its one home, also behind `agent_daily_stats`):
    a broad row per (day, task_type, agent), a row per context key with a value and a joint row when two or
    more keys have one; each also pooled over task types (task_type '*'). Cells are grouped by their
    distinct contexts first, so the macro runs once per context, not per cell.
    """
    con = duckdb.connect()
    try:
        SqlProject.load().run(con, select=[])  # creates the macros
        con.register("cells", cells)
        pairs = ", ".join(f"{sql_literal(k)}, {quote_identifier(k)}" for k in keys)
        context = f"json_object({pairs})::VARCHAR" if keys else "'{}'"
        counts = ", ".join(COUNT_COLUMNS)
        sums = ", ".join(
            f"sum({c}) AS {c}" if c in _FLOAT_COLUMNS else f"sum({c})::BIGINT AS {c}" for c in COUNT_COLUMNS
        )
        sql = f"""
            WITH c AS (SELECT event_date, task_type, agent_name, {counts}, last_event_at, {context} AS context
                       FROM cells),
                 b AS (SELECT context, unnest(context_buckets(context, ?::VARCHAR[]), recursive := true)
                       FROM (SELECT DISTINCT context FROM c))
            SELECT c.event_date,
                   CASE WHEN grouping(c.task_type) = 1 THEN '*' ELSE c.task_type END AS task_type,
                   b.context_key, b.context_value, c.agent_name, {sums}, max(c.last_event_at) AS last_event_at
            FROM c JOIN b ON c.context = b.context
            GROUP BY GROUPING SETS (
                (c.event_date, c.task_type, b.context_key, b.context_value, c.agent_name),
                (c.event_date, b.context_key, b.context_value, c.agent_name)
            )
        """
        return con.execute(sql, [list(keys)]).df()[thompson.DAILY_COLUMNS + EVIDENCE_COLUMNS]
    finally:
        con.close()


def held_out_events(
    con, start: date, end: date, keys: tuple[str, ...], reward_rule: str, weights: RewardWeights | None = None
):
    """Event-level rows for evaluation (task_type, context keys, agent, reward and its components reward_base,
    cost_penalty, latency_penalty, propensity) and the events' candidate sets as an Arrow list array.

    An outcome that carries a `decision_id` found in `agent_decisions` (the served row) takes its propensity
    (the probability of the agent that acted) and its candidate set from the decision log; with an unknown
    decision_id, or an agent the decision could not have chosen, it has no propensity. Outcomes without a
    decision_id keep the client's `selection_propensity` and `candidate_agents` (offline logs, the simulator).
    """
    decisions = "agent_decisions" in table_names(con)
    joined = (
        """LEFT JOIN (SELECT decision_id, agents, probabilities, decided_at FROM agent_decisions WHERE served)
               AS d ON e.decision_id = d.decision_id"""
        if decisions
        else "LEFT JOIN (SELECT NULL::VARCHAR AS decision_id, NULL::VARCHAR[] AS agents,"
        " NULL::DOUBLE[] AS probabilities, NULL::TIMESTAMPTZ AS decided_at) AS d ON false"
    )
    sql = f"""
        SELECT coalesce(task_type, action_type, 'unspecified') AS task_type, {_context_select(keys)},
               agent_name, {reward_sql(reward_rule, weights)} AS reward,
               {reward_components_sql(reward_rule, weights)},
               CASE WHEN e.decision_id IS NULL THEN e.selection_propensity
                    ELSE list_extract(d.probabilities, list_position(d.agents, e.agent_name)) END
                   AS selection_propensity,
               CASE WHEN e.decision_id IS NULL THEN e.candidate_agents ELSE d.agents END AS candidate_agents,
               e.decision_id, e."timestamp", d.decided_at
        FROM outcome_events AS e {joined}
        WHERE cast(e.event_date AS DATE) BETWEEN ? AND ?
    """
    table = with_reward_macros(con).execute(sql, [start, end]).to_arrow_table()
    return table.drop_columns(["candidate_agents"]).to_pandas(), table.column("candidate_agents")


def outcome_stream(
    con, start: date, end: date, keys: tuple[str, ...], reward_rule: str, weights: RewardWeights | None = None
) -> pd.DataFrame:
    """Outcomes of [start, end] as the online evidence of a served version: task_type, context keys,
    agent_name, reward, timestamp (see `lib/bandit/online.py`)."""
    sql = f"""
        SELECT coalesce(task_type, action_type, 'unspecified') AS task_type, {_context_select(keys)},
               agent_name, {reward_sql(reward_rule, weights)} AS reward, "timestamp"
        FROM outcome_events WHERE cast(event_date AS DATE) BETWEEN ? AND ?
    """
    return with_reward_macros(con).execute(sql, [start, end]).df()


def decision_join_stats(con, start: date, end: date) -> dict[str, int]:
    """How outcomes of the window met the decision log: matched, unmatched (unknown decision_id), acted
    outside the decision's eligible agents, and served decisions of the window without any outcome."""
    if "agent_decisions" not in table_names(con):
        counts = con.execute(
            """SELECT count(*), count(decision_id) FROM outcome_events
               WHERE cast(event_date AS DATE) BETWEEN ? AND ?""",
            [start, end],
        ).fetchone()
        return {
            "outcomes": counts[0],
            "with_decision_id": counts[1],
            "matched": 0,
            "unmatched": counts[1],
            "acted_outside_decision": 0,
            "decisions_served": 0,
            "decisions_without_outcome": 0,
        }
    row = con.execute(
        """
        WITH d AS (SELECT decision_id, agents, decided_at FROM agent_decisions WHERE served),
             o AS (SELECT decision_id, agent_name FROM outcome_events
                   WHERE cast(event_date AS DATE) BETWEEN ? AND ?)
        SELECT (SELECT count(*) FROM o),
               (SELECT count(decision_id) FROM o),
               (SELECT count(*) FROM o JOIN d USING (decision_id)),
               (SELECT count(*) FROM o JOIN d USING (decision_id) WHERE NOT list_contains(d.agents, o.agent_name)),
               (SELECT count(*) FROM d WHERE cast(decided_at AS DATE) BETWEEN ? AND ?),
               (SELECT count(*) FROM d WHERE cast(decided_at AS DATE) BETWEEN ? AND ?
                  AND decision_id NOT IN (SELECT decision_id FROM outcome_events WHERE decision_id IS NOT NULL))
        """,
        [start, end, start, end, start, end],
    ).fetchone()
    outcomes, with_id, matched, outside, served, without = (int(v) for v in row)
    return {
        "outcomes": outcomes,
        "with_decision_id": with_id,
        "matched": matched,
        "unmatched": with_id - matched,
        "acted_outside_decision": outside,
        "decisions_served": served,
        "decisions_without_outcome": without,
    }
