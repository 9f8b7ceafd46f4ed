"""What a learning cycle reads from the lake: daily aggregates and joint cells for training, and the
held-out events for evaluation, joined to the decision log (propensities from `agent_decisions`).

Rewards (`REWARD_SQL`): "graded" is the bandit's rule, the same as `stg_outcome_events.reward` and the
posteriors (success 1, partial its quality score or 0.5, else 0); "success" is the plain success rate.
"""

from __future__ import annotations

import json
import re
from datetime import date

import duckdb
import numpy as np
import pandas as pd

from learning_pipeline.lib.bandit import thompson
from learning_pipeline.lib.storage.sql_runner import SQL_ROOT, SqlProject
from learning_pipeline.lib.storage.warehouse import quote_identifier, sql_literal, table_names


def _graded_reward_sql() -> str:
    """The reward expression of the staging model `stg_outcome_events`: the SQL is the rule's one home."""
    text = (SQL_ROOT / "staging" / "stg_outcome_events.sql").read_text()
    found = re.search(r"(case\s+status\b.*?\bend)\s+as\s+reward\b", text, re.S | re.I)
    if found is None:
        raise RuntimeError("stg_outcome_events.sql has no `case status ... end as reward` expression")
    return " ".join(found.group(1).split())


REWARD_SQL = {
    "graded": _graded_reward_sql(),  # the bandit's rule, exactly as the posteriors see it
    "success": "CASE status WHEN 'success' THEN 1.0 ELSE 0.0 END",  # the plain success rate
}


def rewards(outcomes: pd.DataFrame, reward_rule: str = "graded") -> np.ndarray:
    """(n,) reward of outcome rows (status, quality_score) under `reward_rule`: the SQL rule, run by DuckDB."""
    frame = pd.DataFrame(
        {
            "status": outcomes["status"].astype(object),
            "quality_score": pd.to_numeric(outcomes.get("quality_score"), errors="coerce")
            if "quality_score" in outcomes.columns
            else np.nan,
        }
    )
    con = duckdb.connect()
    try:
        con.register("outcomes", frame)
        sql = f"SELECT {REWARD_SQL[reward_rule]} AS reward FROM outcomes"
        return np.asarray(con.execute(sql).fetchnumpy()["reward"], dtype=float)
    finally:
        con.close()


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


def joint_cells(con, start: date, end: date, keys: tuple[str, ...], reward_rule: str) -> pd.DataFrame:
    """One scan of the events: per (event_date, task_type, context keys..., agent) the counts of
    agent_daily_stats (n_events, successes, failures, partials, timeouts, partial_reward, last_event_at) and
    n / reward_sum under `reward_rule`.

    Events are grouped by their raw context text first and the JSON is parsed only for the distinct
    groups (a few thousand instead of millions of rows).
    """
    extract = _context_select(keys)
    cols = ", ".join(quote_identifier(k) for k in keys)
    sql = f"""
        WITH raw AS (
            SELECT cast(event_date AS DATE) AS event_date,
                   coalesce(task_type, action_type, 'unspecified') AS task_type, context, agent_name,
                   count(*) AS n_events,
                   count(*) FILTER (WHERE status = 'success') AS successes,
                   count(*) FILTER (WHERE status = 'failure') AS failures,
                   count(*) FILTER (WHERE status = 'partial') AS partials,
                   count(*) FILTER (WHERE status = 'timeout') AS timeouts,
                   coalesce(sum(coalesce(quality_score, 0.5)) FILTER (WHERE status = 'partial'), 0) AS partial_reward,
                   sum({REWARD_SQL[reward_rule]}) AS reward_sum,
                   max("timestamp") AS last_event_at
            FROM outcome_events
            WHERE cast(event_date AS DATE) BETWEEN ? AND ?
            GROUP BY ALL
        )
        SELECT event_date, task_type, {cols}, agent_name,
               sum(n_events)::BIGINT AS n_events, sum(successes)::BIGINT AS successes,
               sum(failures)::BIGINT AS failures, sum(partials)::BIGINT AS partials,
               sum(timeouts)::BIGINT AS timeouts, sum(partial_reward) AS partial_reward,
               sum(reward_sum) AS reward_sum, max(last_event_at) AS last_event_at
        FROM (SELECT * EXCLUDE (context), {extract} FROM raw)
        GROUP BY ALL
    """
    cells = con.execute(sql, [start, end]).df()
    cells["n"] = cells["n_events"]
    return cells


COUNT_COLUMNS = ["n_events", "successes", "failures", "partials", "timeouts", "partial_reward"]


def daily_from_cells(cells: pd.DataFrame, keys: tuple[str, ...]) -> pd.DataFrame:
    """The daily aggregates of `agent_daily_stats` (thompson.DAILY_COLUMNS) rolled up from joint cells.

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
            f"sum({c}) AS {c}" if c == "partial_reward" else f"sum({c})::BIGINT AS {c}" for c in COUNT_COLUMNS
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
        return con.execute(sql, [list(keys)]).df()[thompson.DAILY_COLUMNS]
    finally:
        con.close()


def held_out_events(con, start: date, end: date, keys: tuple[str, ...], reward_rule: str):
    """Event-level rows for evaluation (task_type, context keys, agent, reward, propensity) and the
    events' candidate sets as an Arrow list array.

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
               agent_name, {REWARD_SQL[reward_rule]} AS reward,
               CASE WHEN e.decision_id IS NULL THEN e.selection_propensity
                    ELSE list_extract(d.probabilities, list_position(d.agents, e.agent_name)) END
                   AS selection_propensity,
               CASE WHEN e.decision_id IS NULL THEN e.candidate_agents ELSE d.agents END AS candidate_agents,
               e.decision_id, e."timestamp", d.decided_at
        FROM outcome_events AS e {joined}
        WHERE cast(e.event_date AS DATE) BETWEEN ? AND ?
    """
    table = con.execute(sql, [start, end]).to_arrow_table()
    return table.drop_columns(["candidate_agents"]).to_pandas(), table.column("candidate_agents")


def outcome_stream(con, start: date, end: date, keys: tuple[str, ...], reward_rule: str) -> pd.DataFrame:
    """Outcomes of [start, end] as the online evidence of a served version: task_type, context keys,
    agent_name, reward, timestamp (see `lib/bandit/online.py`)."""
    sql = f"""
        SELECT coalesce(task_type, action_type, 'unspecified') AS task_type, {_context_select(keys)},
               agent_name, {REWARD_SQL[reward_rule]} AS reward, "timestamp"
        FROM outcome_events WHERE cast(event_date AS DATE) BETWEEN ? AND ?
    """
    return con.execute(sql, [start, end]).df()


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
