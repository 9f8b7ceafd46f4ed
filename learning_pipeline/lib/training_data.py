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

from learning_pipeline.lib.lake import LakePaths, write_bytes_atomic, write_parquet_atomic
from learning_pipeline.lib.pii import PII_TYPES, redaction_query
from learning_pipeline.lib.sql_runner import SqlProject
from learning_pipeline.lib.warehouse import lake_connection, sql_literal

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
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    if "outcome_events" not in tables:
        con.close()
        raise FileNotFoundError(f"no outcome_events in the lake at {paths.lake}: materialize outcome_events first")
    (project or SqlProject.load()).run(con, select=select, vars=vars)
    con.complete()  # DuckDB 2.0: finish any pending result before relation queries
    return con


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> tuple:
    rows = con.execute(sql, params).fetchall() if params is not None else con.execute(sql).fetchall()
    return rows[0]


# --------------------------------------------------------------------------------------------- SFT pairs
@dataclass
class SftResult:
    event_date: str
    candidates: int
    below_quality: int
    missing_io: int
    duplicates_in_partition: int
    duplicates_of_earlier_partitions: int
    exported: int
    redactions: dict[str, int]
    jsonl_path: Path
    parquet_path: Path
    preview: list[dict] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return {
            "candidates": self.candidates,
            "below_quality": self.below_quality,
            "missing_io": self.missing_io,
            "duplicates_in_partition": self.duplicates_in_partition,
            "duplicates_of_earlier_partitions": self.duplicates_of_earlier_partitions,
            "exported": self.exported,
        }


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
        con.execute(f"CREATE TEMP TABLE sft_redacted AS {redaction_query(kept, ['input_text', 'output_text'])}")
        earlier = _earlier_pairs_sql(paths, event_date) if dedup_across_partitions else (
            "SELECT NULL::VARCHAR AS pair_hash WHERE false"
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
        table = con.sql(
            """
            SELECT * EXCLUDE (pii_email, pii_phone, pii_card, pii_secret),
                   json_object('messages', json_array(
                       json_object('role', 'system', 'content', system_prompt),
                       json_object('role', 'user', 'content', "input"),
                       json_object('role', 'assistant', 'content', "output")))::VARCHAR AS messages,
                   pii_email, pii_phone, pii_card, pii_secret
            FROM sft_out ORDER BY event_time, event_id
            """
        ).to_arrow_table().cast(SFT_PARQUET_SCHEMA)
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
        redactions = _one(con, "SELECT " + ", ".join(f"coalesce(sum(pii_{t}), 0)" for t in PII_TYPES) + " FROM sft_out")
    finally:
        con.close()

    jsonl_path = sft_export_path(paths, event_date)
    lines = table.column("messages").to_pylist()
    write_bytes_atomic(jsonl_path, "".join(line + "\n" for line in lines).encode("utf-8"))
    parquet_path = write_parquet_atomic(sft_parquet_path(paths, event_date), table)
    preview = table.select(["event_id", "agent_name", "task_type", "input", "output"]).slice(0, preview_rows).to_pylist()
    return SftResult(
        event_date=event_date,
        candidates=int(counts[0]),
        below_quality=int(counts[1]),
        missing_io=int(counts[2]),
        duplicates_in_partition=int(dup_counts[0] or 0),
        duplicates_of_earlier_partitions=int(dup_counts[1] or 0),
        exported=table.num_rows,
        redactions={t: int(v) for t, v in zip(PII_TYPES, redactions)},
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
    paths: LakePaths, min_samples: int = 20, project: SqlProject | None = None
) -> RoutingResult:
    """Rank every (agent, model) candidate per task class over all events; write lake/routing_pairs."""
    if int(min_samples) < 1:
        raise ValueError(f"min_samples must be at least 1, got {min_samples}")
    con = training_connection(paths, ["routing_pairs"], vars={"routing_min_samples": int(min_samples)}, project=project)
    try:
        table = con.sql("SELECT * FROM routing_pairs ORDER BY task_type, complexity, rank").to_arrow_table()
        best = con.sql(
            """
            SELECT task_type, complexity, agent_name, model, executions, success_rate, quality_mean
            FROM routing_pairs WHERE is_best ORDER BY task_type, complexity
            """
        ).to_arrow_table().to_pylist()
        classes = _one(
            con,
            "SELECT count(DISTINCT (task_type, complexity)), "
            "count(DISTINCT (task_type, complexity)) FILTER (WHERE is_best) FROM routing_pairs",
        )
    finally:
        con.close()
    path = write_parquet_atomic(routing_parquet_path(paths), table)
    return RoutingResult(table=table, parquet_path=path, task_classes=int(classes[0]),
                         classes_with_best=int(classes[1]), best=best)


def successful_events_by_date(paths: LakePaths) -> dict[str, int]:
    """Successful outcome events per event date (for consistency checks)."""
    con = lake_connection(paths)
    try:
        rows = con.execute(
            "SELECT CAST(event_date AS VARCHAR), count(*) FILTER (WHERE status = 'success') "
            "FROM outcome_events GROUP BY ALL"
        ).fetchall()
    except duckdb.CatalogException:
        return {}
    finally:
        con.close()
    return {d: int(n) for d, n in rows}

