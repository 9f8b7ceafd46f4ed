"""Training data mined from outcome events: SFT pairs (chat fine-tuning JSONL) and routing pairs.

The SQL lives in `dbt_like_sql/marts/training/` (run by `lib.sql_runner`); this module adds what SQL
models alone cannot: parameters, PII redaction (`lib.pii`), de-duplication against earlier exports and
atomic file output.

SFT pairs of one event date D:
  1. candidates = successful events of D (`sft_candidates` model);
  2. dropped as below_quality when quality_score is NULL or < min_quality, then as missing_io when the
     input or output text is missing (NULL, JSON null, blank, {} or []);
  3. PII redacted in input and output (typed placeholders, counts per type);
  4. de-duplicated on the redacted (input, output): within D the earliest event (event_time, event_id)
     is kept; pairs already exported for an earlier date (< D) in lake/sft_pairs are dropped as
     cross-partition duplicates. Later dates are never consulted, so re-materializing D is deterministic
     given the earlier partitions; backfill in date order to get global uniqueness;
  5. exported to <data_dir>/exports/sft/event_date=D/sft_pairs.jsonl (OpenAI chat format, one
     {"messages": [system, user, assistant]} per line) and lake/sft_pairs/event_date=D/data.parquet.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from learning_pipeline.lib.events.pii import PII_TYPES, redaction_query
from learning_pipeline.lib.storage.lake import LakePaths, write_bytes_atomic, write_parquet_atomic
from learning_pipeline.lib.storage.sql_runner import SqlProject
from learning_pipeline.lib.storage.warehouse import lake_connection, sql_literal, table_names
from learning_pipeline.lib.training.agent_configs import (
    ConfigRules,
    ConfigVersion,
    recommend_configs,
    write_agent_config,
)

SFT_TABLE = "sft_pairs"
ROUTING_TABLE = "routing_pairs"
DEFAULT_SYSTEM_PROMPT = "You are {agent_name}, an agent that handles {task_type} tasks."

SFT_PARQUET_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("event_time", pa.timestamp("us", tz="UTC")),
        pa.field("agent_name", pa.string(), nullable=False),
        pa.field("task_type", pa.string(), nullable=False),
        pa.field("model", pa.string()),
        pa.field("quality_score", pa.float64()),
        pa.field("system_prompt", pa.string(), nullable=False),
        pa.field("input", pa.string(), nullable=False),
        pa.field("output", pa.string(), nullable=False),
        pa.field("pair_hash", pa.string(), nullable=False),
        pa.field("messages", pa.string(), nullable=False),
    ]
    + [pa.field(f"pii_{t}", pa.int64(), nullable=False) for t in PII_TYPES]
)


def sft_export_path(paths: LakePaths, event_date: str) -> Path:
    return paths.root / "exports" / "sft" / f"event_date={event_date}" / "sft_pairs.jsonl"


def sft_parquet_path(paths: LakePaths, event_date: str) -> Path:
    return paths.partition_dir(SFT_TABLE, event_date) / "data.parquet"


def routing_parquet_path(paths: LakePaths) -> Path:
    return paths.table(ROUTING_TABLE) / "data.parquet"


def _check_date(event_date: str) -> str:
    # Partition keys become file paths and SQL literals: accept only a real ISO date.
    return dt.date.fromisoformat(event_date).isoformat()


def training_connection(
    paths: LakePaths, select: list[str], vars: dict[str, Any] | None = None, project: SqlProject | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the lake views and the selected models (plus upstream) created."""
    con = lake_connection(paths)
    tables = table_names(con)
    if "outcome_events" not in tables:
        con.close()
        raise FileNotFoundError(
            f"no outcome_events in the lake at {paths.lake}: materialize outcome_events first"
        )
    (project or SqlProject.load()).run(con, select=select, vars=vars)
    con.complete()  # DuckDB 2.0: finish any pending result before relation queries
    return con


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> tuple:
    rows = con.execute(sql, params).fetchall() if params is not None else con.execute(sql).fetchall()
    return rows[0]


# --------------------------------------------------------------------------------------------- SFT pairs
@dataclass
class SftResult:
    """counts: candidates, below_quality, missing_io, duplicates_in_partition, duplicates_of_earlier_partitions
    and exported pairs of the day."""

    event_date: str
    counts: dict[str, int]
    redactions: dict[str, int]
    jsonl_path: Path
    parquet_path: Path
    preview: list[dict] = field(default_factory=list)

    @property
    def exported(self) -> int:
        return self.counts["exported"]


def _earlier_pairs_sql(paths: LakePaths, event_date: str) -> str:
    """Pair hashes exported for dates before `event_date` (an empty relation when there are none)."""
    table_dir = paths.table(SFT_TABLE)
    files = sorted(table_dir.glob("event_date=*/data.parquet")) if table_dir.exists() else []
    earlier = [str(f) for f in files if f.parent.name.split("=", 1)[1] < event_date]
    if not earlier:
        return "SELECT NULL::VARCHAR AS pair_hash WHERE false"
    listing = "[" + ", ".join(sql_literal(f) for f in earlier) + "]"
    return f"SELECT DISTINCT pair_hash FROM read_parquet({listing})"


def build_sft_pairs(
    paths: LakePaths,
    event_date: str,
    min_quality: float = 0.7,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    dedup_across_partitions: bool = True,
    preview_rows: int = 5,
    project: SqlProject | None = None,
) -> SftResult:
    """Mine, redact, de-duplicate and export the SFT pairs of one event date (see the module doc)."""
    event_date = _check_date(event_date)
    if not 0.0 <= float(min_quality) <= 1.0:
        raise ValueError(f"min_quality must be within [0, 1], got {min_quality}")
    con = training_connection(
        paths, ["sft_candidates"], vars={"start_date": event_date, "end_date": event_date}, project=project
    )
    try:
        con.execute(
            """
            CREATE TEMP TABLE sft_classified AS
            SELECT *,
                   CASE WHEN quality_score IS NULL OR quality_score < $min_quality THEN 'below_quality'
                        WHEN input_text IS NULL OR output_text IS NULL THEN 'missing_io'
                        ELSE 'kept' END AS outcome
            FROM sft_candidates
            WHERE event_date = CAST($event_date AS DATE)
            """,
            {"min_quality": float(min_quality), "event_date": event_date},
        )
        kept = "(SELECT * EXCLUDE (outcome) FROM sft_classified WHERE outcome = 'kept')"
        con.execute(
            f"CREATE TEMP TABLE sft_redacted AS {redaction_query(kept, ['input_text', 'output_text'])}"
        )
        earlier = (
            _earlier_pairs_sql(paths, event_date)
            if dedup_across_partitions
            else ("SELECT NULL::VARCHAR AS pair_hash WHERE false")
        )
        con.execute(
            f"""
            CREATE TEMP TABLE sft_deduped AS
            WITH hashed AS (
                SELECT *, sha256(input_text || chr(31) || output_text) AS pair_hash FROM sft_redacted
            ),
            ranked AS (
                SELECT *, row_number() OVER (PARTITION BY pair_hash ORDER BY event_time, event_id) AS copy_number
                FROM hashed
            )
            SELECT r.*, e.pair_hash IS NOT NULL AS seen_earlier
            FROM ranked AS r
            LEFT JOIN ({earlier}) AS e USING (pair_hash)
            """
        )
        con.execute(
            """
            CREATE TEMP TABLE sft_out AS
            SELECT
                event_id,
                event_time,
                agent_name,
                task_type,
                model,
                quality_score,
                replace(replace($template, '{agent_name}', agent_name), '{task_type}', task_type) AS system_prompt,
                input_text AS "input",
                output_text AS "output",
                pair_hash,
                pii_email, pii_phone, pii_card, pii_secret
            FROM sft_deduped
            WHERE copy_number = 1 AND NOT seen_earlier
            ORDER BY event_time, event_id
            """,
            {"template": system_prompt},
        )
        table = (
            con.sql(
                """
            SELECT * EXCLUDE (pii_email, pii_phone, pii_card, pii_secret),
                   json_object('messages', json_array(
                       json_object('role', 'system', 'content', system_prompt),
                       json_object('role', 'user', 'content', "input"),
                       json_object('role', 'assistant', 'content', "output")))::VARCHAR AS messages,
                   pii_email, pii_phone, pii_card, pii_secret
            FROM sft_out ORDER BY event_time, event_id
            """
            )
            .to_arrow_table()
            .cast(SFT_PARQUET_SCHEMA)
        )
        counts = _one(
            con,
            """
            SELECT count(*),
                   count(*) FILTER (WHERE outcome = 'below_quality'),
                   count(*) FILTER (WHERE outcome = 'missing_io')
            FROM sft_classified
            """,
        )
        dup_counts = _one(
            con,
            """
            SELECT count(*) FILTER (WHERE copy_number > 1),
                   count(*) FILTER (WHERE copy_number = 1 AND seen_earlier)
            FROM sft_deduped
            """,
        )
        # Redactions in the exported pairs (duplicates dropped afterwards are not counted).
        redactions = _one(
            con, "SELECT " + ", ".join(f"coalesce(sum(pii_{t}), 0)" for t in PII_TYPES) + " FROM sft_out"
        )
    finally:
        con.close()

    jsonl_path = sft_export_path(paths, event_date)
    lines = table.column("messages").to_pylist()
    write_bytes_atomic(jsonl_path, "".join(line + "\n" for line in lines).encode("utf-8"))
    parquet_path = write_parquet_atomic(sft_parquet_path(paths, event_date), table)
    preview = (
        table.select(["event_id", "agent_name", "task_type", "input", "output"])
        .slice(0, preview_rows)
        .to_pylist()
    )
    return SftResult(
        event_date=event_date,
        counts={
            "candidates": int(counts[0]),
            "below_quality": int(counts[1]),
            "missing_io": int(counts[2]),
            "duplicates_in_partition": int(dup_counts[0] or 0),
            "duplicates_of_earlier_partitions": int(dup_counts[1] or 0),
            "exported": table.num_rows,
        },
        redactions={t: int(v) for t, v in zip(PII_TYPES, redactions, strict=False)},
        jsonl_path=jsonl_path,
        parquet_path=parquet_path,
        preview=preview,
    )


# ----------------------------------------------------------------------------------------- routing pairs
@dataclass
class RoutingResult:
    table: pa.Table
    parquet_path: Path
    task_classes: int
    classes_with_best: int
    best: list[dict]


def build_routing_pairs(
    paths: LakePaths,
    min_samples: int = 20,
    project: SqlProject | None = None,
    reward: dict[str, Any] | None = None,
) -> RoutingResult:
    """Rank every (agent, model) candidate per task class over all events by mean reward; write
    lake/routing_pairs. `reward`: the reward macro's SQL vars (`lib.learning.data.reward_vars`), default none
    (the base rule without penalties)."""
    if int(min_samples) < 1:
        raise ValueError(f"min_samples must be at least 1, got {min_samples}")
    con = training_connection(
        paths,
        ["routing_pairs"],
        vars={"routing_min_samples": int(min_samples), **(reward or {})},
        project=project,
    )
    try:
        table = con.sql("SELECT * FROM routing_pairs ORDER BY task_type, complexity, rank").to_arrow_table()
        best = (
            con.sql(
                """
            SELECT task_type, complexity, agent_name, model, executions, success_rate, reward_mean,
                   cost_mean_usd, quality_mean
            FROM routing_pairs WHERE is_best ORDER BY task_type, complexity
            """
            )
            .to_arrow_table()
            .to_pylist()
        )
        classes = _one(
            con,
            "SELECT count(DISTINCT (task_type, complexity)), "
            "count(DISTINCT (task_type, complexity)) FILTER (WHERE is_best) FROM routing_pairs",
        )
    finally:
        con.close()
    path = write_parquet_atomic(routing_parquet_path(paths), table)
    return RoutingResult(
        table=table,
        parquet_path=path,
        task_classes=int(classes[0]),
        classes_with_best=int(classes[1]),
        best=best,
    )


@dataclass
class AgentConfigResult:
    recommendations: list[dict]
    written: list[ConfigVersion]
    unchanged: list[ConfigVersion]


def build_agent_config_recommendations(
    paths: LakePaths, rules: ConfigRules | None = None, project: SqlProject | None = None
) -> AgentConfigResult:
    """Recommend a config per agent from all events and write changed ones with history."""
    rules = rules or ConfigRules()
    con = training_connection(
        paths,
        ["agent_config_profile", "agent_config_tools", "agent_config_task_types"],
        vars={"config_min_samples": int(rules.min_samples)},
        project=project,
    )
    try:
        profile = (
            con.sql("SELECT * FROM agent_config_profile ORDER BY agent_name").to_arrow_table().to_pylist()
        )
        tools = (
            con.sql("SELECT * FROM agent_config_tools ORDER BY agent_name, tool").to_arrow_table().to_pylist()
        )
        task_types = (
            con.sql("SELECT * FROM agent_config_task_types ORDER BY agent_name, rank")
            .to_arrow_table()
            .to_pylist()
        )
    finally:
        con.close()
    recommendations = recommend_configs(profile, tools, task_types, rules)
    written, unchanged = [], []
    for rec in recommendations:
        version, changed = write_agent_config(paths, rec["agent"], rec["evidence"])
        (written if changed else unchanged).append(version)
    return AgentConfigResult(recommendations, written, unchanged)


# ------------------------------------------------------------------------------------------------ checks
@dataclass
class CheckOutcome:
    passed: bool
    details: dict[str, Any]


def _table_glob(paths: LakePaths, table: str, partitioned: bool) -> str | None:
    table_dir = paths.table(table)
    pattern = "event_date=*/data.parquet" if partitioned else "data.parquet"
    if not table_dir.exists() or not any(table_dir.glob(pattern)):
        return None
    return sql_literal(str(table_dir / pattern))


def check_sft_keys(paths: LakePaths) -> CheckOutcome:
    """event_id not null and unique over all partitions; pair_hash unique within each partition;
    input, output and messages present."""
    glob = _table_glob(paths, SFT_TABLE, partitioned=True)
    if glob is None:
        return CheckOutcome(True, {"rows": 0})
    with duckdb.connect() as con:
        rows, null_keys, dup_ids, dup_pairs_in_day, missing = _one(
            con,
            f"""
            WITH t AS (SELECT * FROM read_parquet({glob}, hive_partitioning = true))
            SELECT count(*),
                   count(*) FILTER (WHERE event_id IS NULL OR pair_hash IS NULL),
                   count(event_id) - count(DISTINCT event_id),
                   (SELECT count(*) - count(DISTINCT (event_date, pair_hash)) FROM t),
                   count(*) FILTER (WHERE "input" IS NULL OR "output" IS NULL OR messages IS NULL)
            FROM t
            """,
        )
    details = {
        "rows": rows,
        "null_keys": null_keys,
        "duplicate_event_ids": dup_ids,
        "duplicate_pairs_within_a_day": dup_pairs_in_day,
        "missing_text": missing,
    }
    return CheckOutcome(null_keys == 0 and dup_ids == 0 and dup_pairs_in_day == 0 and missing == 0, details)


def check_sft_unique_across_partitions(paths: LakePaths) -> CheckOutcome:
    """No (input, output) pair exported on two dates (can fail after an out-of-order backfill)."""
    glob = _table_glob(paths, SFT_TABLE, partitioned=True)
    if glob is None:
        return CheckOutcome(True, {"repeated_pairs": 0})
    with duckdb.connect() as con:
        (repeated,) = _one(con, f"SELECT count(*) - count(DISTINCT pair_hash) FROM read_parquet({glob})")
    return CheckOutcome(repeated == 0, {"repeated_pairs": int(repeated)})


def check_sft_consistent_with_events(paths: LakePaths) -> CheckOutcome:
    """Per date: pairs <= successful events; every pair is a successful event of that date; the JSONL
    export has one line per Parquet row."""
    glob = _table_glob(paths, SFT_TABLE, partitioned=True)
    if glob is None:
        return CheckOutcome(True, {"dates": 0})
    con = lake_connection(paths)
    try:
        per_day = (
            con.sql(
                f"""
            WITH pairs AS (
                SELECT CAST(event_date AS VARCHAR) AS event_date, event_id
                FROM read_parquet({glob}, hive_partitioning = true)
            ),
            events AS (
                SELECT CAST(event_date AS VARCHAR) AS event_date, event_id, status FROM outcome_events
            )
            SELECT p.event_date,
                   count(*) AS pairs,
                   count(*) FILTER (WHERE e.status = 'success') AS matched_successes,
                   (SELECT count(*) FROM events AS x WHERE x.event_date = p.event_date AND x.status = 'success')
                       AS successful_events
            FROM pairs AS p
            LEFT JOIN events AS e USING (event_date, event_id)
            GROUP BY p.event_date
            ORDER BY p.event_date
            """
            )
            .to_arrow_table()
            .to_pylist()
        )
    finally:
        con.close()
    problems = []
    for row in per_day:
        export = sft_export_path(paths, row["event_date"])
        lines = sum(1 for _ in open(export, "rb")) if export.exists() else None
        if (
            row["pairs"] > row["successful_events"]
            or row["matched_successes"] != row["pairs"]
            or lines != row["pairs"]
        ):
            problems.append({**row, "jsonl_lines": lines})
    return CheckOutcome(not problems, {"dates": len(per_day), "inconsistent_dates": problems[:20]})


def check_sft_no_pii_left(paths: LakePaths) -> CheckOutcome:
    """Running the redaction again over the exported texts finds nothing."""
    glob = _table_glob(paths, SFT_TABLE, partitioned=True)
    if glob is None:
        return CheckOutcome(True, {t: 0 for t in PII_TYPES})
    source = f'(SELECT "input", "output" FROM read_parquet({glob}))'
    with duckdb.connect() as con:
        found = _one(
            con,
            "SELECT "
            + ", ".join(f"coalesce(sum(pii_{t}), 0)" for t in PII_TYPES)
            + f" FROM ({redaction_query(source, ['input', 'output'])})",
        )
    details = {t: int(n) for t, n in zip(PII_TYPES, found, strict=False)}
    return CheckOutcome(sum(details.values()) == 0, details)


def check_routing_pairs(paths: LakePaths) -> CheckOutcome:
    """Keys not null and unique; rates in [0, 1]; at most one best per class; executions of the '*' rows
    add up to outcome_events per effective task type."""
    path = routing_parquet_path(paths)
    if not path.exists():
        return CheckOutcome(False, {"error": f"missing {path}"})
    con = lake_connection(paths)
    try:
        lit = sql_literal(str(path))
        null_keys, dup_keys, bad_rates, multi_best, rows = _one(
            con,
            f"""
            WITH t AS (SELECT * FROM read_parquet({lit}))
            SELECT count(*) FILTER (WHERE task_type IS NULL OR complexity IS NULL OR agent_name IS NULL
                                     OR model IS NULL),
                   count(*) - count(DISTINCT (task_type, complexity, agent_name, model)),
                   count(*) FILTER (WHERE success_rate NOT BETWEEN 0 AND 1 OR success_rate IS NULL
                                     OR quality_mean NOT BETWEEN 0 AND 1),
                   (SELECT count(*) FROM (SELECT task_type, complexity FROM t GROUP BY ALL
                                          HAVING count(*) FILTER (WHERE is_best) > 1)),
                   count(*)
            FROM t
            """,
        )
        mismatched = (
            con.sql(
                f"""
            WITH r AS (SELECT task_type, sum(executions) AS executions FROM read_parquet({lit})
                       WHERE complexity = '*' GROUP BY task_type),
                 e AS (SELECT coalesce(task_type, action_type, 'unspecified') AS task_type, count(*) AS executions
                       FROM outcome_events GROUP BY 1)
            SELECT coalesce(r.task_type, e.task_type) AS task_type, r.executions AS routing, e.executions AS events
            FROM r FULL OUTER JOIN e USING (task_type)
            WHERE r.executions IS DISTINCT FROM e.executions
            """
            )
            .to_arrow_table()
            .to_pylist()
        )
    finally:
        con.close()
    details = {
        "rows": rows,
        "null_keys": null_keys,
        "duplicate_keys": dup_keys,
        "rates_out_of_range": bad_rates,
        "classes_with_several_best": multi_best,
        "task_types_not_matching_events": mismatched[:20],
    }
    return CheckOutcome(
        null_keys == 0 and dup_keys == 0 and bad_rates == 0 and multi_best == 0 and not mismatched, details
    )


def check_agent_configs(paths: LakePaths) -> CheckOutcome:
    """Every agent of outcome_events has a current config that parses, belongs to its file name, is a
    stored history version, and has max_turns >= 1."""
    from learning_pipeline.lib.training.agent_configs import (
        agent_file_name,
        history_path,
        list_agent_configs,
        read_config,
    )

    con = lake_connection(paths)
    try:
        agents = [
            r[0] for r in con.execute("SELECT DISTINCT agent_name FROM outcome_events ORDER BY 1").fetchall()
        ]
    finally:
        con.close()
    configs = list_agent_configs(paths)
    problems = []
    for agent in agents:
        path = configs.get(agent)
        if path is None:
            problems.append({"agent": agent, "problem": "no config"})
            continue
        doc = read_config(path)
        number = doc["version"]["number"]
        if path.stem != agent_file_name(agent):
            problems.append({"agent": agent, "problem": f"file {path.name} does not match the name"})
        if not history_path(paths, agent, number).exists():
            problems.append({"agent": agent, "problem": f"version {number} missing from history"})
        if not isinstance(doc["agent"].get("max_turns"), int) or doc["agent"]["max_turns"] < 1:
            problems.append({"agent": agent, "problem": "max_turns < 1"})
    return CheckOutcome(
        not problems, {"agents": len(agents), "configs": len(configs), "problems": problems[:20]}
    )
