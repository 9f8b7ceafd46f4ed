"""Validate one day of staged records, vectorized in DuckDB, into accepted events and quarantine rows.

Every staged record ends in exactly one of three places: accepted (a row of OUTCOME_EVENT_SCHEMA),
quarantined (with `reason` = the first rule it breaks and `details` = every rule it breaks), or dropped as a
duplicate of an accepted event with the same event_id (the first by landing file and record number wins).
`received = accepted + quarantined + duplicates` holds for every run and is checked before anything is written.

The checks are generated from `schema.EVENT_FIELDS`; field names are constants of this module, and every
value from the data is compared as data, never spliced into SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from learning_pipeline.lib.events.schema import (
    DUCKDB_TYPES,
    EVENT_FIELDS,
    REJECT_REASONS,
    SEVERITIES,
    STATUSES,
    EventField,
)
from learning_pipeline.lib.events.staging import RAW_RECORD_KEEP_BYTES, StagingRules
from learning_pipeline.lib.storage.lake import publish, tmp_path_for
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


def _copy_atomic(con: duckdb.DuckDBPyConnection, select_sql: str, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_for(final)
    try:
        con.execute(f"COPY ({select_sql}) TO {sql_literal(str(tmp))} (FORMAT parquet, COMPRESSION zstd)")
        publish(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def validate_partition(
    con: duckdb.DuckDBPyConnection,
    staged_files: list[Path],
    rules: StagingRules,
    accepted_path: Path,
    quarantine_path: Path,
) -> PartitionCounts:
    """Validate and de-duplicate one day's staged files and publish both outputs atomically."""
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
    quarantined = f"SELECT {_quarantine_select()} FROM checked WHERE len(errors) > 0 ORDER BY source_file, record_number"

    received = con.execute("SELECT count(*) FROM checked").fetchone()[0]
    by_reason = dict(
        con.execute(
            "SELECT split_part(errors[1], ':', 1), count(*) FROM checked WHERE len(errors) > 0 GROUP BY 1 ORDER BY 1"
        ).fetchall()
    )
    quarantined_n = sum(by_reason.values())
    valid_n = received - quarantined_n
    accepted_n = con.execute(
        'SELECT count(DISTINCT "event_id$value") FROM checked WHERE len(errors) = 0'
    ).fetchone()[0]
    counts = PartitionCounts(received, accepted_n, quarantined_n, valid_n - accepted_n, by_reason)
    unknown = set(by_reason) - set(REJECT_REASONS)
    if unknown or not counts.balanced():
        raise RuntimeError(f"validation lost track of records: {counts}, unknown reasons {sorted(unknown)}")

    # The first copy of an event_id (by landing file and record) wins; the window is skipped without duplicates.
    first_copy = (
        'QUALIFY row_number() OVER (PARTITION BY "event_id$value" ORDER BY source_file, record_number) = 1 '
        if counts.duplicates
        else ""
    )
    accepted = (
        f"SELECT {_accepted_select()} FROM checked WHERE len(errors) = 0 {first_copy}"
        'ORDER BY "timestamp", event_id'
    )
    _copy_atomic(con, accepted, accepted_path)
    _copy_atomic(con, quarantined, quarantine_path)
    con.execute("DROP TABLE checked")
    return counts
