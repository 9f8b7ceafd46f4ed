"""What the Learning API answers, without HTTP: warehouse queries, alerts and the version stages.

The functions read the lake through `warehouse.lake_connection` (a fresh in-memory DuckDB per call, so
tables created after start-up are seen) and the autonomy tables (alerts, approvals, stages). Decisions are
served by `service.decisions.DecisionService`.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from learning_pipeline.lib.storage.lake import LakePaths
from learning_pipeline.lib.storage.warehouse import lake_connection, table_names

log = logging.getLogger(__name__)

EVALUATIONS = ("evaluation_accepted", "evaluation_rejected")


def clean(value: Any) -> Any:
    """JSON-safe scalars: NaN/NA -> None, numpy -> Python, timestamps -> ISO strings."""
    if value is None:
        return None
    if isinstance(value, (pd.Timestamp, datetime)):
        return None if pd.isna(value) else pd.Timestamp(value).isoformat()
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (list, tuple, np.ndarray)):
        return [clean(v) for v in value]
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def records(frame: pd.DataFrame) -> list[dict]:
    return [{k: clean(v) for k, v in row.items()} for row in frame.to_dict("records")]


# ---- warehouse reads ---------------------------------------------------------------------------------


def learning_metrics(paths: LakePaths) -> dict:
    """Seed metrics from the learning cycles recorded in `learning_events` and the champion in `model_versions`.

    total_updates = evaluated cycles; successful_updates = accepted by the eval gate; failed_updates = rejected;
    avg_update_time_ms = mean cycle duration; samples_processed = held-out samples evaluated;
    current_model_score = the champion's estimated success (candidate_score); improvement_rate = mean
    improvement of the accepted cycles over the version they replaced.
    """
    out = {
        "total_updates": 0,
        "successful_updates": 0,
        "failed_updates": 0,
        "avg_update_time_ms": None,
        "samples_processed": 0,
        "current_model_score": None,
        "improvement_rate": None,
        "current_model_version": None,
        "rollbacks": 0,
        "last_update_at": None,
    }
    with lake_connection(paths) as con:
        tables = table_names(con)
        if "learning_events" in tables:
            row = con.execute(
                """SELECT count(*) FILTER (WHERE event_type IN ('evaluation_accepted', 'evaluation_rejected')),
                          count(*) FILTER (WHERE event_type = 'evaluation_accepted'),
                          count(*) FILTER (WHERE event_type = 'evaluation_rejected'),
                          avg(duration_ms) FILTER (WHERE event_type LIKE 'evaluation_%'),
                          coalesce(sum(samples_processed) FILTER (WHERE event_type LIKE 'evaluation_%'), 0),
                          avg(improvement) FILTER (WHERE event_type = 'evaluation_accepted'),
                          count(*) FILTER (WHERE event_type = 'rollback'),
                          max(created_at)
                   FROM learning_events"""
            ).fetchone()
            keys = [
                "total_updates",
                "successful_updates",
                "failed_updates",
                "avg_update_time_ms",
                "samples_processed",
                "improvement_rate",
                "rollbacks",
                "last_update_at",
            ]
            out.update({k: clean(v) for k, v in zip(keys, row, strict=False)})
        if "model_versions" in tables:
            found = con.execute(
                "SELECT version_number, metrics FROM model_versions WHERE status = 'active' "
                "ORDER BY version_number DESC LIMIT 1"
            ).fetchone()
            if found is not None:
                out["current_model_version"] = int(found[0])
                score = json.loads(found[1] or "{}").get("candidate_score")
                out["current_model_score"] = clean(score)
    return out


PERFORMANCE_COLUMNS = [
    "agent_name",
    "success_rate",
    "avg_latency_ms",
    "total_executions",
    "failure_rate",
    "timeout_rate",
    "reward_rate",
    "latency_p95_ms",
    "cost_avg_usd",
    "last_event_at",
]


def agent_performance(paths: LakePaths, task_type: str | None = None, window: str = "all") -> list[dict]:
    """Per agent (or per agent within one task type): success rate, mean latency, executions, ..."""
    table, where, params = "agent_stats", "", [window]
    if task_type is not None:
        table, where, params = "agent_task_stats", "AND task_type = ?", [window, task_type]
    with lake_connection(paths) as con:
        if table not in table_names(con):
            return []
        frame = con.execute(
            f"""SELECT agent_name, success_rate, latency_avg_ms AS avg_latency_ms, executions AS total_executions,
                       failure_rate, timeout_rate, reward_rate, latency_p95_ms, cost_avg_usd, last_event_at
                FROM {table}
                WHERE window_name = ? AND context_key = '*' AND context_value = '*' {where}
                ORDER BY success_rate DESC, agent_name""",
            params,
        ).df()
    rows = records(frame)
    if task_type is not None:
        for row in rows:
            row["task_type"] = task_type
    return rows


def last_cycle(paths: LakePaths) -> dict | None:
    with lake_connection(paths) as con:
        if "learning_events" not in table_names(con):
            return None
        frame = con.execute(
            """SELECT event_type, model_version_id, created_at, improvement, duration_ms, samples_processed,
                      partition_key, reason
               FROM learning_events ORDER BY created_at DESC LIMIT 1"""
        ).df()
    return records(frame)[0] if len(frame) else None


def loop_cycle(paths: LakePaths) -> dict | None:
    """The autonomous loop's last decision (learning_cycles), if the loop has run."""
    try:
        from learning_pipeline.lib.autonomy.continuous import read_learning_cycles

        cycles = read_learning_cycles(paths)
    except Exception:  # the loop's table may not exist yet
        return None
    if cycles.empty:
        return None
    return records(
        cycles.sort_values("at").tail(1)[["event_type", "at", "trigger", "partition_key", "reason"]]
    )[0]


@dataclass
class Instigators:
    """Sensors and schedules of the code location, with their state on the Dagster instance when known."""

    sensors: list[dict] = field(default_factory=list)
    schedules: list[dict] = field(default_factory=list)
    error: str | None = None


def instigators(dagster_home: str | None) -> Instigators:
    try:
        import dagster as dg

        from learning_pipeline.definitions import defs as code_location

        defs = code_location()

        states: dict[str, str] = {}
        if dagster_home:  # the instance in that directory, read without touching DAGSTER_HOME
            with dg.DagsterInstance.from_config(dagster_home) as instance:
                for state in instance.all_instigator_state():
                    states[state.name] = state.status.value

        def row(item) -> dict:
            default = getattr(item, "default_status", None)
            default = default.value if default is not None else None
            status = states.get(item.name, default)
            if status == "DECLARED_IN_CODE":  # the instance defers to the code: the default status holds
                status = default
            elif status == "AUTOMATICALLY_RUNNING":
                status = "RUNNING"
            return {"name": item.name, "default_status": default, "status": status}

        return Instigators([row(s) for s in (defs.sensors or [])], [row(s) for s in (defs.schedules or [])])
    except Exception as error:
        return Instigators(error=f"{type(error).__name__}: {error}")


# ---- alerts and graduation ---------------------------------------------------------------------------


def list_alerts(store, include_acknowledged: bool = False, alert_type: str | None = None) -> list[dict]:
    """Alerts of an `alerts.AlertStore`, newest first, with `details` parsed."""
    frame = store.list(include_acknowledged=include_acknowledged, alert_type=alert_type)
    rows = records(frame)
    for row in rows:
        if isinstance(row.get("details"), str):
            try:
                row["details"] = json.loads(row["details"])
            except ValueError:
                pass
    return rows


class NotFound(ValueError):
    pass


class Conflict(ValueError):
    pass


def acknowledge_alert(store, alert_id: str, by: str) -> dict:
    from learning_pipeline.lib.autonomy.alerts import AlertAlreadyAcknowledged, AlertNotFound

    try:
        row = store.acknowledge(alert_id, by)
    except AlertNotFound as error:
        raise NotFound(str(error)) from error
    except AlertAlreadyAcknowledged as error:
        raise Conflict(str(error)) from error
    return {k: clean(v) for k, v in row.items()}


def graduation_status(paths: LakePaths, tracking_uri: str) -> dict:
    from learning_pipeline.lib.autonomy import graduation
    from learning_pipeline.lib.autonomy import operations as autonomy_ops

    frame = autonomy_ops.status_frame(paths, tracking_uri)
    versions = records(frame)
    events = graduation.read_graduation_events(paths)
    transitions = records(events.tail(50)) if not events.empty else []
    return {
        "versions": versions,
        "eligible_for_live": [
            v["version_number"] for v in versions if v.get("stage") in (graduation.SHADOW, graduation.CANARY)
        ],
        "pending_approval": [
            v["version_number"] for v in versions if v.get("approval") == graduation.PENDING
        ],
        "transitions": transitions,
    }


def approve_live(paths: LakePaths, tracking_uri: str, version: int, by: str, reason: str) -> dict:
    """NotFound: no such registered version; Conflict: the version is not in shadow or canary."""
    from learning_pipeline.lib.autonomy import operations as autonomy_ops

    registered = set(autonomy_ops.versions_frame(tracking_uri)["version_number"].astype(int))
    if version not in registered:
        known = ", ".join(str(v) for v in sorted(registered)) or "none yet"
        raise NotFound(f"agent-router has no version {version} (registered: {known})")
    try:
        row = autonomy_ops.approve_live(paths, tracking_uri, version, by, reason)
    except ValueError as error:
        raise Conflict(str(error)) from error
    return {k: clean(v) for k, v in row.items()}
