"""The checks of an outcome record, as SQL: JSON-text fields in, typed values and the list of broken rules out.

Staging runs them once per record as it reads a landing file (`staged_sql`), so a staged part already holds
every record's typed columns, its errors and, for a rejected record, its raw text; validation
(`validation.py`) then only de-duplicates and publishes. The checks are generated from `schema.EVENT_FIELDS`;
field names are constants of this module, and every value from the data is compared as data, never spliced
into SQL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from learning_pipeline.lib.events.schema import (
    DUCKDB_TYPES,
    EVENT_FIELDS,
    SEVERITIES,
    STATUSES,
    EventField,
)
from learning_pipeline.lib.storage.warehouse import sql_literal

if TYPE_CHECKING:
    from learning_pipeline.lib.events.staging import StagingRules

# Longest record kept verbatim in the quarantine; the landing file keeps the whole record.
RAW_RECORD_KEEP_BYTES = 64 * 1024

MAX_NAME_LENGTH = 256
NAME_FIELDS = ("agent_name", "agent_type", "action_type", "task_type")


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


def _checked_sql(source_sql: str, rules: StagingRules) -> str:
    """Records as typed values plus their errors; the raw record is kept only for rejected ones."""
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


# A staged part with this column holds checked records (`staged_sql`); without it, JSON texts per field
# (parts staged before records were checked at staging), which validation checks as it reads them.
ERRORS_COLUMN = "errors"


def staged_sql(source_sql: str, rules: StagingRules) -> str:
    """Checked records as staged: the accepted columns, source_ref, errors, raw_record (rejected records
    only) and event_date, the routing date: the event's UTC date when its timestamp is usable, else the day
    it arrived (such a record always breaks a rule).

    source_sql gives source_file, record_number, source_ref, received_at, parse_error, raw_record and one
    JSON-text column per field.
    """
    event_time = _q("timestamp$value")
    first = sql_literal(rules.first_date.isoformat())
    skew_seconds = int(rules.max_future_skew.total_seconds())
    return f"""
    SELECT {_accepted_select()}, source_ref, errors AS {ERRORS_COLUMN}, raw_record,
           CASE
             WHEN {event_time} <= received_at + INTERVAL {skew_seconds} SECOND
                  AND {event_time} >= {first}::TIMESTAMPTZ
             THEN CAST({event_time} AS DATE)
             ELSE CAST(received_at AS DATE)
           END AS event_date
    FROM ({_checked_sql(source_sql, rules)})"""


def quarantine_select() -> str:
    """Quarantine columns from staged records (`staged_sql`)."""
    return (
        "source_file, record_number, source_ref, received_at, "
        f"split_part({ERRORS_COLUMN}[1], ':', 1) AS reason, array_to_string({ERRORS_COLUMN}, '; ') AS details, "
        "event_id, raw_record"
    )
