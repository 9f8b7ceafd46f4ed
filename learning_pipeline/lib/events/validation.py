"""Validate one day of staged records, vectorized in DuckDB, into accepted events and quarantine rows.

Every staged record ends in exactly one of three places: accepted (a row of OUTCOME_EVENT_SCHEMA),
quarantined (with `reason` = the first rule it breaks and `details` = every rule it breaks), or dropped as a
duplicate of an accepted event with the same event_id. `received = accepted + quarantined + duplicates` holds
for every run and is checked before anything is written.

Duplicates, within a day: the first copy by landing file and record number wins. Across days: a valid copy on
another day at most `dedup_window_days` away (7 by default) that arrived earlier (by `received_at`, then
landing file and record number) wins, and every copy of the day is counted as a duplicate
(`cross_day_duplicates`). The record that arrived first keeps its day, so a re-delivery dated on another day
never needs the first day to be run again, and quarantined copies never suppress a valid one.

Publishing never goes back in time: each output carries, in its Parquet key-value metadata, the highest
staging-log sequence number its build read (`staging_seq`) and its counts. Under a per-partition lock, a
build replaces a partition only if that partition was not built from a later log position; otherwise the run
leaves it in place and reports the published counts. Two runs of one day (with or without a concurrency pool)
can finish in any order without losing the newer one's events.

Staged parts already hold checked records (`checks.staged_sql`: typed columns, errors, raw text of rejected
records), so a day is read as columns: the counts and de-duplication touch only the narrow key columns, and
the records are read once more only to be written. Parts staged before records were checked at staging are
checked here as they are read, with the same SQL.
"""

from __future__ import annotations

import fcntl
import json
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from learning_pipeline.lib.events.checks import ERRORS_COLUMN, quarantine_select, staged_sql
from learning_pipeline.lib.events.schema import FIELD_NAMES, OUTCOME_EVENT_SCHEMA, REJECT_REASONS
from learning_pipeline.lib.events.staging import StagingRules
from learning_pipeline.lib.storage.lake import make_dirs_durable, publish, tmp_path_for
from learning_pipeline.lib.storage.warehouse import sql_literal


@dataclass(frozen=True)
class PartitionCounts:
    received: int
    accepted: int
    quarantined: int
    duplicates: int
    by_reason: dict[str, int]
    cross_day_duplicates: int = 0  # part of duplicates: copies of an event accepted on another day
    staging_seq: int | None = None  # the staging-log position the published partition was built from
    published: bool = True  # False: a build from a later log position was already published; counts are its

    def balanced(self) -> bool:
        return self.received == self.accepted + self.quarantined + self.duplicates


SEQ_KEY = "staging_seq"
LOG_KEY = "staging_log"
COUNTS_KEY = "partition_counts"


def _copy_tmp(con: duckdb.DuckDBPyConnection, select_sql: str, final: Path, kv: dict[str, str]) -> Path:
    make_dirs_durable(final.parent)
    tmp = tmp_path_for(final)
    metadata = ", ".join(f"{key}: {sql_literal(value)}" for key, value in kv.items())
    con.execute(
        f"COPY ({select_sql}) TO {sql_literal(str(tmp))} "
        f"(FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, KV_METADATA {{{metadata}}})"
    )
    return tmp


def published_version(path: Path) -> tuple[str | None, int | None, dict | None]:
    """(staging log id, staging_seq, counts) recorded in a published partition file; Nones when missing or
    written before partitions were versioned."""
    try:
        kv = pq.read_metadata(path).metadata or {}
    except (FileNotFoundError, OSError):
        return None, None, None
    seq, counts, log_id = (kv.get(key.encode()) for key in (SEQ_KEY, COUNTS_KEY, LOG_KEY))
    return (
        log_id.decode() if log_id is not None else None,
        int(seq) if seq else None,
        json.loads(counts) if counts else None,
    )


def _publish_unless_newer(
    outputs: list[tuple[Path, Path]], staging_seq: int | None, staging_log: str
) -> tuple[int | None, dict]:
    """Publish every (tmp, final) unless a final was built from a later position of the same staging log.

    Returns (None, {}) when published, else (the newer sequence number, the published counts).
    """
    lock_path = outputs[-1][1].with_name(".publish.lock")
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if staging_seq is not None:
                for log_id, seq, counts in map(published_version, (final for _, final in outputs)):
                    if log_id == staging_log and seq is not None and seq > staging_seq:
                        return seq, counts or {}
            for tmp, final in outputs:
                publish(tmp, final)
            return None, {}
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


_EMPTY_SOURCE = (
    "SELECT NULL::VARCHAR AS source_file, NULL::BIGINT AS record_number, NULL::VARCHAR AS source_ref, "
    "NULL::TIMESTAMPTZ AS received_at, NULL::VARCHAR AS parse_error, NULL::VARCHAR AS raw_record, "
    + ", ".join(f'NULL::VARCHAR AS "{name}"' for name in FIELD_NAMES)
    + " LIMIT 0"
)


def _records_sql(files: list[Path], rules: StagingRules) -> str:
    """Staged records of these files as checked rows (`checks.staged_sql` columns, without event_date)."""
    checked, legacy = [], []
    for path in files:
        (checked if ERRORS_COLUMN in pq.read_schema(path).names else legacy).append(path)
    parts = []
    if checked:
        parts.append(
            f"SELECT * EXCLUDE (event_date) FROM read_parquet({_list(checked)}, hive_partitioning = true)"
        )
    if legacy or not files:
        source = (
            f"SELECT * EXCLUDE (event_date) FROM read_parquet({_list(legacy)}, union_by_name = true, "
            "hive_partitioning = true)"
            if legacy
            else _EMPTY_SOURCE
        )
        parts.append(f"SELECT * EXCLUDE (event_date) FROM ({staged_sql(source, rules)})")
    return " UNION ALL BY NAME ".join(parts)


def _list(files: list[Path]) -> str:
    return "[" + ", ".join(sql_literal(str(p)) for p in files) + "]"


_ARRIVAL_KEY = "struct_pack(r := received_at, f := source_file, n := record_number)"


def _find_cross_day_duplicates(con: duckdb.DuckDBPyConnection, neighbor_files: list[Path], rules) -> None:
    """Temp table cross_day(id): event_ids of the day whose first valid copy arrived after a valid copy on a
    neighbouring day. Neighbours are read only as their event_id, arrival and errors columns."""
    con.execute("CREATE OR REPLACE TEMP TABLE cross_day (id VARCHAR)")
    if not neighbor_files:
        return
    con.execute(
        f"""INSERT INTO cross_day
        SELECT d.id FROM (SELECT event_id AS id, min({_ARRIVAL_KEY}) AS k FROM day_keys WHERE ok GROUP BY 1) AS d
        JOIN (SELECT event_id AS id, min({_ARRIVAL_KEY}) AS k FROM ({_records_sql(neighbor_files, rules)})
              WHERE len({ERRORS_COLUMN}) = 0 AND event_id IN (SELECT event_id FROM day_keys WHERE ok)
              GROUP BY 1) AS n ON n.id = d.id
        WHERE n.k < d.k"""
    )


def validate_partition(
    con: duckdb.DuckDBPyConnection,
    staged_files: list[Path],
    rules: StagingRules,
    accepted_path: Path,
    quarantine_path: Path,
    *,
    neighbor_files: list[Path] | None = None,
    staging_seq: int | None = None,
    staging_log: str = "",
) -> PartitionCounts:
    """De-duplicate one day's staged records and publish both outputs atomically.

    neighbor_files: staged files of the days within the de-duplication window (see the module doc).
    staging_seq, staging_log: the staging-log position staged_files were read at, and the log's id; a partition
    built from a later position of the same log is never replaced (the returned counts are then the published
    ones, with published=False).
    """
    con.execute("SET TimeZone = 'UTC'")
    records = _records_sql(staged_files, rules)
    # The narrow columns every count and the de-duplication need; the records are read again only to be written.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE day_keys AS SELECT event_id, source_file, record_number, received_at, "
        f"len({ERRORS_COLUMN}) = 0 AS ok, split_part({ERRORS_COLUMN}[1], ':', 1) AS reason FROM ({records})"
    )
    _find_cross_day_duplicates(con, list(neighbor_files or []) if rules.dedup_window_days > 0 else [], rules)
    received = con.execute("SELECT count(*) FROM day_keys").fetchone()[0]
    by_reason = dict(
        con.execute("SELECT reason, count(*) FROM day_keys WHERE NOT ok GROUP BY 1 ORDER BY 1").fetchall()
    )
    quarantined_n = sum(by_reason.values())
    valid_n = received - quarantined_n
    # Every copy that is not kept: cross-day duplicates, then all but the first copy by landing file and record.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dropped AS SELECT source_file, record_number FROM day_keys "
        "WHERE ok AND event_id IN (SELECT id FROM cross_day) UNION ALL "
        "SELECT source_file, record_number FROM day_keys WHERE ok AND event_id NOT IN (SELECT id FROM cross_day) "
        "QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY source_file, record_number) > 1"
    )
    cross_day_n, dropped_n = con.execute(
        "SELECT count(*) FILTER (WHERE event_id IN (SELECT id FROM cross_day)), "
        "(SELECT count(*) FROM dropped) FROM day_keys WHERE ok"
    ).fetchone()
    counts = PartitionCounts(
        received,
        valid_n - dropped_n,
        quarantined_n,
        dropped_n,
        by_reason,
        cross_day_duplicates=cross_day_n,
        staging_seq=staging_seq,
    )
    unknown = set(by_reason) - set(REJECT_REASONS)
    if unknown or not counts.balanced():
        raise RuntimeError(f"validation lost track of records: {counts}, unknown reasons {sorted(unknown)}")

    columns = ", ".join(f'r."{name}"' for name in OUTCOME_EVENT_SCHEMA.names)
    accepted = (
        f"SELECT {columns} FROM ({records}) AS r ANTI JOIN dropped AS d "
        "ON r.source_file = d.source_file AND r.record_number = d.record_number "
        f'WHERE len(r.{ERRORS_COLUMN}) = 0 ORDER BY r."timestamp", r.event_id'
    )
    quarantined = (
        f"SELECT {quarantine_select()} FROM ({records}) WHERE len({ERRORS_COLUMN}) > 0 "
        "ORDER BY source_file, record_number"
    )
    kv = {
        COUNTS_KEY: json.dumps({k: v for k, v in counts.__dict__.items() if k != "published"}, sort_keys=True)
    }
    if staging_seq is not None:
        kv[SEQ_KEY], kv[LOG_KEY] = str(staging_seq), staging_log
    outputs = []
    try:
        outputs.append((_copy_tmp(con, quarantined, quarantine_path, kv), quarantine_path))
        outputs.append((_copy_tmp(con, accepted, accepted_path, kv), accepted_path))
        newer, published = _publish_unless_newer(outputs, staging_seq, staging_log)
    finally:
        for tmp, _ in outputs:
            tmp.unlink(missing_ok=True)
        for table in ("day_keys", "cross_day", "dropped"):
            con.execute(f"DROP TABLE IF EXISTS {table}")
    if newer is not None:
        fields = {k: v for k, v in published.items() if k in PartitionCounts.__dataclass_fields__}
        return replace(counts, **{**fields, "staging_seq": newer, "published": False})
    return counts
