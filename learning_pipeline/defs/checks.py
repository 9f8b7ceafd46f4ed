"""One factory for asset checks declared as rules on a table, so each domain states what it verifies.

A `TableCheck` names the rules a table must keep (columns never missing, combinations never repeated,
conditions no row or group may meet) and, optionally, a measure that needs code: a reconciliation with
outcome_events, a freshness, a check implemented in lib. `asset_check` turns a declaration into a
`@dg.asset_check`; every rule reports its count as metadata (0 = kept).

Severity: a broken rule fails with `severity`; when the rules hold and only the measure fails, with
`measure_severity` (default: `severity`), e.g. counts that lag outcome_events for a moment only warn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import duckdb

from learning_pipeline.defs.resources import LakeResource
from learning_pipeline.lib.storage.lake import LakePaths
from learning_pipeline.lib.storage.warehouse import lake_connection, quote_identifier

# (connection or None, lake paths) -> (passed, metadata)
Measure = Callable[[duckdb.DuckDBPyConnection | None, LakePaths], tuple[bool, Mapping[str, Any]]]


@dataclass(frozen=True)
class TableCheck:
    """An asset check, declared.

    name, asset, description, blocking: as for `dg.asset_check`.
    table: what the rules read (default: the asset's name), on the connection `connect(paths)` opens
        (None: open none; the measure then gets None).
    not_null: columns that must have a value in every row -> metadata `null_keys` (rows with a missing one).
    unique: metadata name -> columns whose combination must not repeat (count of repeated combinations).
    rows: metadata name -> SQL condition no row may meet (count of rows meeting it).
    groups: metadata name -> (group columns, SQL condition over aggregates) no group may meet (count).
    measure: further metadata and a verdict from code.
    """

    name: str
    asset: Any
    description: str
    blocking: bool = False
    table: str | None = None
    not_null: Sequence[str] = ()
    unique: Mapping[str, Sequence[str]] = field(default_factory=dict)
    rows: Mapping[str, str] = field(default_factory=dict)
    groups: Mapping[str, tuple[Sequence[str], str]] = field(default_factory=dict)
    measure: Measure | None = None
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR
    measure_severity: dg.AssetCheckSeverity | None = None
    connect: Callable[[LakePaths], duckdb.DuckDBPyConnection] | None = lake_connection

    @property
    def table_name(self) -> str:
        return self.table or dg.AssetKey.from_coercible_or_definition(self.asset).to_user_string()


def keys(*columns: str) -> dict[str, Any]:
    """The usual key rule: `columns` never missing and never repeated together (`duplicate_keys`)."""
    return {"not_null": columns, "unique": {"duplicate_keys": columns}}


def outside(*columns: str, low: float = 0, high: float = 1) -> str:
    """SQL condition: one of `columns` lies outside [low, high] (a missing value is not outside)."""
    return " OR ".join(f"NOT coalesce({c} BETWEEN {low} AND {high}, true)" for c in columns)


def rule_counts(con: duckdb.DuckDBPyConnection, check: TableCheck) -> dict[str, int]:
    """One count per rule of `check` (0 = kept), in one query."""
    t = quote_identifier(check.table_name)

    def repeated(columns: Sequence[str], having: str) -> str:
        return f"(SELECT count(*) FROM (SELECT 1 FROM {t} GROUP BY {', '.join(columns)} HAVING {having}))"

    parts: dict[str, str] = {}
    if check.not_null:
        parts["null_keys"] = (
            f"(SELECT count(*) FROM {t} WHERE {' OR '.join(f'{c} IS NULL' for c in check.not_null)})"
        )
    for metric, columns in check.unique.items():
        parts[metric] = repeated(columns, "count(*) > 1")
    for metric, condition in check.rows.items():
        parts[metric] = f"(SELECT count(*) FROM {t} WHERE {condition})"
    for metric, (columns, condition) in check.groups.items():
        parts[metric] = repeated(columns, condition)
    if not parts:
        return {}
    values = con.execute("SELECT " + ", ".join(f"{sql} AS {quote_identifier(m)}" for m, sql in parts.items()))
    return {metric: int(value) for metric, value in zip(parts, values.fetchone(), strict=True)}


def _metadata_value(value: Any) -> Any:
    return value if isinstance(value, (int, float, str)) else dg.MetadataValue.json(value)


def evaluate(check: TableCheck, paths: LakePaths) -> dg.AssetCheckResult:
    """Run the rules and the measure of `check` on the lake at `paths`."""
    con = check.connect(paths) if check.connect is not None else None
    try:
        counts = rule_counts(con, check) if con is not None else {}
        measured_ok, measured = check.measure(con, paths) if check.measure is not None else (True, {})
    finally:
        if con is not None:
            con.close()
    rules_ok = not any(counts.values())
    severity = check.severity if not rules_ok else (check.measure_severity or check.severity)
    metadata = {k: _metadata_value(v) for k, v in {**counts, **measured}.items()}
    return dg.AssetCheckResult(passed=rules_ok and measured_ok, severity=severity, metadata=metadata)


def asset_check(check: TableCheck) -> dg.AssetChecksDefinition:
    """The `@dg.asset_check` of a declaration (it reads the lake through the `lake` resource)."""

    @dg.asset_check(
        name=check.name, asset=check.asset, blocking=check.blocking, description=check.description
    )
    def _check(lake: LakeResource) -> dg.AssetCheckResult:
        return evaluate(check, lake.paths)

    return _check


def asset_checks(*checks: TableCheck) -> list[dg.AssetChecksDefinition]:
    return [asset_check(c) for c in checks]
