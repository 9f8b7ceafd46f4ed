"""The loop's control plane: the settings an operator changes at run time, persisted where the sensors read
them, every change recorded with who, when, why, the old and the new value.

Defaults come from the `autonomy` resource (code and environment); a stored value overrides its default
until it is reset. Values are validated by `LoopControl` (types and ranges), so a bad value is refused with
the field's name before anything is stored. State lives in the state store (SQLite under the data directory,
or PostgreSQL with `$LEARNING_PIPELINE_STATE_URL`), shared by the sensors, the API and the CLI.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from learning_pipeline.lib.storage.lake import LakePaths
from learning_pipeline.lib.storage.state_store import TableSpec, open_state_store


class LoopControl(BaseModel):
    """Every setting that can change at run time, with its range (all optional in a change)."""

    model_config = ConfigDict(extra="forbid")

    continuous_learning: bool | None = Field(
        None, description="the continuous-learning sensor may request cycles"
    )
    auto_approve: bool | None = Field(
        None, description="approve gate-accepted versions that meet the thresholds"
    )
    min_new_events: int | None = Field(None, ge=0, description="new events needed before a cycle")
    min_iteration_gap_minutes: float | None = Field(
        None, ge=0, le=7 * 24 * 60, description="cooldown (cadence)"
    )
    max_iterations_per_day: int | None = Field(None, ge=1, le=1440, description="cycles per UTC day at most")
    convergence_threshold: float | None = Field(
        None, ge=0, le=1, description="mean improvement that converges"
    )
    approve_min_success_rate: float | None = Field(
        None, ge=0, le=1, description="auto-approval: value at least"
    )
    approve_min_samples: int | None = Field(None, ge=0, description="auto-approval: held-out events at least")
    approve_min_improvement: float | None = Field(None, ge=-1, le=1, description="auto-approval: improvement")
    graduation_min_samples: int | None = Field(
        None, ge=0, description="approved -> shadow: decisions at least"
    )
    graduation_min_success_rate: float | None = Field(
        None, ge=0, le=1, description="approved -> shadow: success"
    )


SETTING_NAMES = tuple(LoopControl.model_fields)

SETTINGS_TABLE = TableSpec.parse(
    "loop_settings",
    "name text primary key, value text not null, changed_at timestamp not null, changed_by text not null",
)  # value: JSON
# old_value: JSON of the effective value before (NULL: the default); new_value: JSON (NULL: reset to the default)
CHANGES_TABLE = TableSpec.parse(
    "loop_settings_changes",
    "id text primary key, at timestamp not null, by text not null, name text not null, old_value text, "
    "new_value text, reason text not null",
    indexes=(("at",),),
)


def validate_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """The changes as typed values; ValueError naming every bad field."""
    try:
        parsed = LoopControl(**changes)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        raise ValueError(f"invalid settings: {problems}") from error
    return {name: getattr(parsed, name) for name in changes}


class SettingsStore:
    def __init__(self, paths: LakePaths):
        self.store = open_state_store(paths)
        self.store.ensure(SETTINGS_TABLE)
        self.store.ensure(CHANGES_TABLE)

    def overrides(self) -> dict[str, Any]:
        with self.store.read() as tx:
            rows = tx.execute("SELECT name, value FROM loop_settings").fetchall()
        return {name: json.loads(value) for name, value in rows if name in SETTING_NAMES}

    def effective(self, defaults: dict[str, Any]) -> dict[str, Any]:
        return {**defaults, **self.overrides()}

    def change(
        self,
        changes: dict[str, Any],
        by: str,
        reason: str,
        defaults: dict[str, Any],
        at: datetime | None = None,
    ) -> list[dict]:
        """Apply changes (None resets a setting to its default); returns one record per setting changed."""
        if not by or not by.strip() or not reason or not reason.strip():
            raise ValueError("a settings change needs who (by) and why (reason)")
        if not changes:
            raise ValueError("no settings to change")
        values = validate_changes({k: v for k, v in changes.items() if v is not None})
        resets = [k for k, v in changes.items() if v is None]
        unknown = [k for k in resets if k not in SETTING_NAMES]
        if unknown:
            raise ValueError(f"invalid settings: {', '.join(unknown)}: unknown setting")
        at = at or datetime.now(UTC)
        records = []
        with self.store.write("loop_settings") as tx:
            current = dict(tx.execute("SELECT name, value FROM loop_settings").fetchall())
            for name in [*values, *resets]:
                old = json.loads(current[name]) if name in current else defaults.get(name)
                new = values.get(name, defaults.get(name))
                tx.execute("DELETE FROM loop_settings WHERE name = ?", [name])
                if name not in resets:
                    tx.execute(
                        "INSERT INTO loop_settings (name, value, changed_at, changed_by) VALUES (?, ?, ?, ?)",
                        [name, json.dumps(new), at, by],
                    )
                record = {
                    "id": uuid.uuid4().hex,
                    "at": at,
                    "by": by,
                    "name": name,
                    "old_value": json.dumps(old),
                    "new_value": json.dumps(new),
                    "reason": reason,
                }
                tx.execute(
                    "INSERT INTO loop_settings_changes (id, at, by, name, old_value, new_value, reason) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [record[c] for c in CHANGES_TABLE.names],
                )
                records.append({**record, "old_value": old, "new_value": new, "at": at.isoformat()})
        return records

    def history(self, limit: int = 200) -> pd.DataFrame:
        with self.store.read() as tx:
            rows = tx.execute(
                f"SELECT {', '.join(CHANGES_TABLE.names)} FROM loop_settings_changes ORDER BY at DESC LIMIT ?",
                [int(limit)],
            ).fetchall()
        return CHANGES_TABLE.frame(rows)
