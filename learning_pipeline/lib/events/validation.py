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

The checks are generated from `schema.EVENT_FIELDS`; field names are constants of this module, and every
value from the data is compared as data, never spliced into SQL.
"""

from __future__ import annotations

import fcntl
import json
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from learning_pipeline.lib.events.schema import (
    DUCKDB_TYPES,
    EVENT_FIELDS,
    REJECT_REASONS,
    SEVERITIES,
    STATUSES,
    EventField,
)
from learning_pipeline.lib.events.staging import RAW_RECORD_KEEP_BYTES, StagingRules
from learning_pipeline.lib.storage.lake import make_dirs_durable, publish, tmp_path_for
from learning_pipeline.lib.storage.warehouse import sql_literal

MAX_NAME_LENGTH = 256
NAME_FIELDS = ("agent_name", "agent_type", "action_type", "task_type")
_NUMBER_TYPES = "('BIGINT', 'UBIGINT', 'DOUBLE')"
_INTEGER_TYPES = "('BIGINT', 'UBIGINT')"


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


def _q(name: str) -> str:
    return f'"{name}"'


def _v(f: EventField) -> str:
    """Column holding the typed value of a field, NULL when missing or of the wrong type."""
    return _q(f"{f.name}$value")


def _present(f: EventField) -> str:
    return f"({_q(f.name)} IS NOT NULL AND {_q(f.name)} <> 'null')"


def _json_type_name(f: EventField) -> str:
    """The JSON type of a field's value as a lowercase name, for messages (evaluated on rejected rows only)."""
    col = _q(f.name)
    return (
        f"CASE json_type({col}) WHEN 'VARCHAR' THEN 'string' WHEN 'BIGINT' THEN 'integer' "
        f"WHEN 'UBIGINT' THEN 'integer' WHEN 'DOUBLE' THEN 'number' ELSE lower(json_type({col})) END"
    )


def _value_sql(f: EventField) -> str:
    """The typed value, read off the field's JSON text.

    Staged fields are minified JSON texts written by DuckDB's JSON reader (a JSON null is SQL NULL), so the
    first character tells strings, objects and lists apart without parsing; numbers are cast directly.
    """
    col = _q(f.name)
    return {
        "string": f"CASE WHEN starts_with({col}, '\"') THEN {col}->>'$' END",
        "timestamp": f"CASE WHEN starts_with({col}, '\"') THEN TRY_CAST({col}->>'$' AS TIMESTAMPTZ) END",
        "double": f"TRY_CAST({col} AS DOUBLE)",
        "integer": f"CASE WHEN NOT regexp_matches({col}, '[.eE]') THEN TRY_CAST({col} AS BIGINT) END",
        "json": f"CASE WHEN {_present(f)} THEN {col} END",
        "object": f"CASE WHEN starts_with({col}, '{{') THEN {col} END",
        "string_list": f"CASE WHEN starts_with({col}, '[') AND list_bool_and(list_transform(json_type({col}, '$[*]'), "
        f"lambda e: e = 'VARCHAR')) IS NOT false THEN from_json({col}, '[\"VARCHAR\"]') END",
    }[f.kind]


_EXPECTED = {
    "string": "a string",
    "timestamp": "an ISO-8601 time string",
    "double": "a number",
    "integer": "an integer",
    "object": "a JSON object",
    "string_list": "a list of strings",
}


def _range_rule(f: EventField) -> tuple[str, str] | None:
    """(condition, message) for a typed value outside its allowed range, or None for unbounded fields."""
    value = _v(f)
    conditions, bounds = [], []
    if f.minimum is not None:
        conditions.append(f"{value} {'<=' if f.exclusive_minimum else '<'} {f.minimum}")
        bounds.append(f"{'>' if f.exclusive_minimum else '>='} {f.minimum:g}")
    if f.maximum is not None:
        conditions.append(f"{value} > {f.maximum}")
        bounds.append(f"<= {f.maximum:g}")
    if f.kind == "double":
        conditions.append(f"isnan({value}) OR isinf({value})")
    if f.name in NAME_FIELDS:
        conditions.append(f"length({value}) > {MAX_NAME_LENGTH}")
        bounds.append(f"at most {MAX_NAME_LENGTH} characters")
    if f.required and f.kind == "string":
        conditions.append(f"trim({value}) = ''")
        bounds.append("not blank")
    if not conditions:
        return None
    message = f"out_of_range: {f.name} must be {' and '.join(bounds) or 'finite'}"
    return f"{value} IS NOT NULL AND ({' OR '.join(conditions)})", sql_literal(message)


def _rules(rules: StagingRules) -> list[tuple[str, str]]:
    """Every validation rule as (SQL condition that breaks it, SQL message), in REJECT_REASONS order."""
    checks: list[tuple[str, str]] = []
    payload = " + ".join(f"coalesce(strlen({_q(f.name)}), 0)" for f in EVENT_FIELDS)
    checks.append(
        (
            f"({payload}) > {rules.max_record_bytes}",
            f"'oversized_payload: record of ' || ({payload}) || ' bytes exceeds {rules.max_record_bytes}'",
        )
    )
    for f in EVENT_FIELDS:
        if f.required:
            checks.append((f"NOT {_present(f)}", sql_literal(f"missing_required_field: {f.name}")))
    for f in EVENT_FIELDS:
        if f.kind != "json":
            message = f"'wrong_type: {f.name} must be {_EXPECTED[f.kind]}, got ' || {_json_type_name(f)}"
            checks.append((f"{_present(f)} AND {_v(f)} IS NULL", message))
    checks += [rule for rule in map(_range_rule, EVENT_FIELDS) if rule]
    for name, allowed in (("status", STATUSES), ("severity", SEVERITIES)):
        value = _q(f"{name}$value")
        allowed_sql = ", ".join(sql_literal(a) for a in allowed)
        checks.append(
            (f"lower(trim({value})) NOT IN ({allowed_sql})", f"'unknown_{name}: ' || left({value}, 80)")
        )
    event_time = _q("timestamp$value")
    skew_seconds = int(rules.max_future_skew.total_seconds())
    checks.append(
        (
            f"{event_time} > received_at + INTERVAL {skew_seconds} SECOND",
            f"'future_timestamp: ' || strftime({event_time}, '%Y-%m-%dT%H:%M:%SZ') || ' is more than "
            f"{skew_seconds} s after arrival'",
        )
    )
    first = sql_literal(rules.first_date.isoformat())
    checks.append(
        (
            f"{event_time} < {first}::TIMESTAMPTZ",
            f"'before_first_partition: ' || strftime({event_time}, '%Y-%m-%d') || ' is before ' || {first}",
        )
    )
    return checks


def error_list_sql(rules: StagingRules) -> str:
    """A DuckDB list of every rule a typed record breaks; empty for a valid record.

    The list is built only for records that break a rule: most records pass one cheap boolean test.
    """
    checks = _rules(rules)
    any_broken = " OR ".join(f"coalesce({condition}, false)" for condition, _ in checks)
    messages = ", ".join(f"CASE WHEN {condition} THEN {message} END" for condition, message in checks)
    # A record that could not be parsed has only its parse error; its fields are all missing.
    return (
        "CASE WHEN parse_error IS NOT NULL THEN [parse_error] "
        f"WHEN {any_broken} THEN list_filter([{messages}], lambda e: e IS NOT NULL) "
        "ELSE []::VARCHAR[] END"
    )


def checked_sql(source_sql: str, rules: StagingRules) -> str:
    """Staged records as typed values plus their errors; the raw record is kept only for rejected ones."""
    values = ", ".join(f"{_value_sql(f)} AS {_v(f)}" for f in EVENT_FIELDS)
    raw = (
        "coalesce(raw_record, to_json(struct_pack("
        + ", ".join(f"{_q(f.name)} := {_q(f.name)}::JSON" for f in EVENT_FIELDS)
        + "))::VARCHAR)"
    )
    kept = ", ".join(_v(f) for f in EVENT_FIELDS)
    return f"""
    SELECT source_file, record_number, source_ref, received_at, {kept}, errors,
           CASE WHEN len(errors) > 0 THEN left({raw}, {RAW_RECORD_KEEP_BYTES}) END AS raw_record
    FROM (
        SELECT *, {error_list_sql(rules)} AS errors
        FROM (SELECT *, {values} FROM ({source_sql}))
    )"""


def _accepted_select() -> str:
    columns = []
    for f in EVENT_FIELDS:
        value = _v(f)
        if f.name in ("status", "severity"):
            value = f"lower(trim({value}))"
        columns.append(f"CAST({value} AS {DUCKDB_TYPES[f.kind]}) AS {_q(f.name)}")
    columns += ["source_file", "record_number", "received_at"]
    return ", ".join(columns)


def _quarantine_select() -> str:
    return (
        "source_file, record_number, source_ref, received_at, "
        "split_part(errors[1], ':', 1) AS reason, array_to_string(errors, '; ') AS details, "
        '"event_id$value" AS event_id, raw_record'
    )


SEQ_KEY = "staging_seq"
LOG_KEY = "staging_log"
COUNTS_KEY = "partition_counts"


def _copy_tmp(con: duckdb.DuckDBPyConnection, select_sql: str, final: Path, kv: dict[str, str]) -> Path:
    make_dirs_durable(final.parent)
    tmp = tmp_path_for(final)
    metadata = ", ".join(f"{key}: {sql_literal(value)}" for key, value in kv.items())
    con.execute(
        f"COPY ({select_sql}) TO {sql_literal(str(tmp))} (FORMAT parquet, COMPRESSION zstd, KV_METADATA {{{metadata}}})"
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


_ARRIVAL_KEY = "struct_pack(r := received_at, f := source_file, n := record_number)"


def _find_cross_day_duplicates(con: duckdb.DuckDBPyConnection, neighbor_files: list[Path], rules) -> None:
    """Temp table cross_day(id): event_ids of the day whose first valid copy arrived after a valid copy on a
    neighbouring day. Only neighbour records sharing an event_id with the day are validated."""
    con.execute("CREATE OR REPLACE TEMP TABLE cross_day (id VARCHAR)")
    if not neighbor_files:
        return
    # Staged fields are JSON texts written by DuckDB's JSON writer, as to_json writes them: neighbour ids are
    # matched as text, without parsing a JSON value per row, and compared as values after validation.
    con.execute(
        f'CREATE OR REPLACE TEMP TABLE day_first AS SELECT "event_id$value" AS id, min({_ARRIVAL_KEY}) AS k, '
        'to_json("event_id$value")::VARCHAR AS id_json FROM checked WHERE len(errors) = 0 GROUP BY 1'
    )
    # First only the event_id column of every neighbour file; whole records only from files that share an id.
    files = "[" + ", ".join(sql_literal(str(p)) for p in neighbor_files) + "]"
    hits = con.execute(
        f"SELECT DISTINCT filename FROM read_parquet({files}, filename = true, union_by_name = true) "
        'WHERE "event_id" IN (SELECT id_json FROM day_first)'
    ).fetchall()
    if not hits:
        con.execute("DROP TABLE day_first")
        return
    files = "[" + ", ".join(sql_literal(name) for (name,) in sorted(hits)) + "]"
    candidates = (
        f"SELECT * EXCLUDE (event_date) FROM read_parquet({files}, union_by_name = true, hive_partitioning = true) "
        'WHERE "event_id" IN (SELECT id_json FROM day_first)'
    )
    con.execute(
        f"""INSERT INTO cross_day
        SELECT d.id FROM day_first AS d
        JOIN (SELECT "event_id$value" AS id, min({_ARRIVAL_KEY}) AS k
              FROM ({checked_sql(candidates, rules)}) WHERE len(errors) = 0 GROUP BY 1) AS n ON n.id = d.id
        WHERE n.k < d.k"""
    )
    con.execute("DROP TABLE day_first")


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
    """Validate and de-duplicate one day's staged files and publish both outputs atomically.

    neighbor_files: staged files of the days within the de-duplication window (see the module doc).
    staging_seq, staging_log: the staging-log position staged_files were read at, and the log's id; a partition
    built from a later position of the same log is never replaced (the returned counts are then the published
    ones, with published=False).
    """
    con.execute("SET TimeZone = 'UTC'")
    if staged_files:
        files = "[" + ", ".join(sql_literal(str(p)) for p in staged_files) + "]"
        source = f"SELECT * EXCLUDE (event_date) FROM read_parquet({files}, union_by_name = true, hive_partitioning = true)"
        con.execute(f"CREATE OR REPLACE TEMP TABLE checked AS {checked_sql(source, rules)}")
    else:
        fields = ", ".join(f"NULL::VARCHAR AS {_q(f.name)}" for f in EVENT_FIELDS)
        source = (
            "SELECT NULL::VARCHAR AS source_file, NULL::BIGINT AS record_number, NULL::VARCHAR AS source_ref, "
            f"NULL::TIMESTAMPTZ AS received_at, NULL::VARCHAR AS parse_error, NULL::VARCHAR AS raw_record, {fields} LIMIT 0"
        )
        con.execute(f"CREATE OR REPLACE TEMP TABLE checked AS {checked_sql(source, rules)}")
    _find_cross_day_duplicates(con, list(neighbor_files or []) if rules.dedup_window_days > 0 else [], rules)
    quarantined = f"SELECT {_quarantine_select()} FROM checked WHERE len(errors) > 0 ORDER BY source_file, record_number"

    received = con.execute("SELECT count(*) FROM checked").fetchone()[0]
    by_reason = dict(
        con.execute(
            "SELECT split_part(errors[1], ':', 1), count(*) FROM checked WHERE len(errors) > 0 GROUP BY 1 ORDER BY 1"
        ).fetchall()
    )
    quarantined_n = sum(by_reason.values())
    valid_n = received - quarantined_n
    kept = 'len(errors) = 0 AND "event_id$value" NOT IN (SELECT id FROM cross_day)'
    accepted_n, kept_n = con.execute(
        f'SELECT count(DISTINCT "event_id$value"), count(*) FROM checked WHERE {kept}'
    ).fetchone()
    counts = PartitionCounts(
        received,
        accepted_n,
        quarantined_n,
        valid_n - accepted_n,
        by_reason,
        cross_day_duplicates=valid_n - kept_n,
        staging_seq=staging_seq,
    )
    unknown = set(by_reason) - set(REJECT_REASONS)
    if unknown or not counts.balanced():
        raise RuntimeError(f"validation lost track of records: {counts}, unknown reasons {sorted(unknown)}")

    # The first copy of an event_id (by landing file and record) wins; the window is skipped without duplicates.
    first_copy = (
        'QUALIFY row_number() OVER (PARTITION BY "event_id$value" ORDER BY source_file, record_number) = 1 '
        if kept_n > accepted_n
        else ""
    )
    accepted = (
        f'SELECT {_accepted_select()} FROM checked WHERE {kept} {first_copy}ORDER BY "timestamp", event_id'
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
        con.execute("DROP TABLE checked")
        con.execute("DROP TABLE cross_day")
    if newer is not None:
        fields = {k: v for k, v in published.items() if k in PartitionCounts.__dataclass_fields__}
        return replace(counts, **{**fields, "staging_seq": newer, "published": False})
    return counts
