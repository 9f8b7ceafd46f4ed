"""Alerts: the `agent_alerts` table, de-duplication, degradation detection and an optional webhook.

Storage: the `agent_alerts` table of the state store (`learning_pipeline.lib.storage.state_store`): PostgreSQL
when `$LEARNING_PIPELINE_STATE_URL` is set, else SQLite in WAL mode at `<data_dir>/autonomy/state.sqlite`. Both
take concurrent readers and writers; writers take turns on the table, so de-duplication and "acknowledge once"
hold across threads and processes. After every change, and still in commit order, a snapshot is published as
`lake/agent_alerts/data.parquet`, so `warehouse.lake_connection` sees the table like any other. Alerts of the
former store, `<data_dir>/autonomy/alerts.duckdb`, are imported once (the file is then renamed
`alerts.duckdb.imported`).

De-duplication: every alert carries a `dedup_key` naming its condition (e.g. `PERFORMANCE_DEGRADATION:agent`).
A new alert with the same key is suppressed while an earlier one of the same or a worse severity is
unacknowledged, or was created less than `dedup_hours` ago; so a condition that holds on every sensor tick
raises one alert, not one per tick, and a condition that gets worse (WARNING, then CRITICAL) still alerts.
"""

from __future__ import annotations

import json
import logging
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from learning_pipeline.lib.storage.lake import LakePaths
from learning_pipeline.lib.storage.state_store import StateStore, TableSpec, Tx, open_state_store, publish

log = logging.getLogger(__name__)

ALERT_TYPES = ("PERFORMANCE_DEGRADATION", "CONVERGENCE", "GRADUATION_READY", "ERROR", "MILESTONE")
SEVERITIES = ("INFO", "WARNING", "CRITICAL")
WEBHOOK_ENV = "LEARNING_PIPELINE_ALERT_WEBHOOK_URL"
DEDUP_HOURS = 24.0

ALERTS_TABLE = TableSpec.parse(
    "agent_alerts",
    "id text primary key, alert_type text not null, severity text not null, title text not null, message text "
    "not null, agent_name text, model_version int, metric text, value float, threshold float, details text, "
    "source text, dedup_key text not null, created_at timestamp not null, acknowledged bool not null default "
    "false, acknowledged_at timestamp, acknowledged_by text, notified bool not null default false",
    indexes=(("dedup_key",), ("created_at",)),
    order_by="created_at DESC, id",
)


def utc_now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass
class Alert:
    alert_type: str
    severity: str
    title: str
    message: str
    dedup_key: str
    agent_name: str | None = None
    model_version: int | None = None
    metric: str | None = None
    value: float | None = None
    threshold: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    source: str | None = None

    def __post_init__(self):
        if self.alert_type not in ALERT_TYPES:
            raise ValueError(f"alert_type must be one of {ALERT_TYPES}, got {self.alert_type!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")
        if not self.dedup_key:
            raise ValueError("an alert needs a dedup_key")


class AlertNotFound(ValueError):
    pass


class AlertAlreadyAcknowledged(ValueError):
    pass


class AlertStore:
    """The agent_alerts table in the state store of `paths` (see the module doc)."""

    def __init__(
        self,
        paths: LakePaths,
        lock_timeout_seconds: float = 30.0,
        dedup_hours: float = DEDUP_HOURS,
        state_url: str | None = None,
    ):
        self.paths = paths
        self.lock_timeout_seconds = lock_timeout_seconds  # how long a write waits for the table's writers
        self.dedup = timedelta(hours=dedup_hours)
        self.store: StateStore = open_state_store(paths, state_url)
        self.store.ensure(ALERTS_TABLE)
        self._import_legacy()

    @property
    def location(self) -> str:
        """Where the alerts live, credentials redacted."""
        return self.store.describe()

    # -- writes -----------------------------------------------------------------------------------
    def raise_alert(self, alert: Alert, now: datetime | None = None) -> dict | None:
        """Insert the alert unless its condition already alerted (see module doc); returns the row or None."""
        now = _utc(now or utc_now())
        # a milestone is reached once: any earlier alert with its key suppresses it
        since = datetime(1970, 1, 1, tzinfo=UTC) if alert.alert_type == "MILESTONE" else now - self.dedup
        with self.store.write(ALERTS_TABLE.name, self.lock_timeout_seconds) as tx:
            rank = " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(SEVERITIES))
            recent = tx.execute(
                "SELECT count(*) FROM agent_alerts WHERE dedup_key = ? AND (NOT acknowledged OR created_at > ?)"
                f" AND CASE severity {rank} END >= ?",
                [alert.dedup_key, since, SEVERITIES.index(alert.severity)],
            ).fetchone()[0]
            if recent:
                return None
            row = {
                **{k: v for k, v in asdict(alert).items() if k != "details"},
                "details": json.dumps(alert.details, default=str, sort_keys=True),
                "id": uuid.uuid4().hex[:12],
                "created_at": now,
                "acknowledged": False,
                "acknowledged_at": None,
                "acknowledged_by": None,
                "notified": False,
            }
            ALERTS_TABLE.insert(tx, [row])
            tx.after_commit(self._publish)
        return row

    def acknowledge(self, alert_id: str, by: str, now: datetime | None = None) -> dict:
        """Acknowledge one alert; raises AlertNotFound or AlertAlreadyAcknowledged (both ValueError)."""
        if not by or not by.strip():
            raise ValueError("acknowledging an alert needs a name (--by)")
        with self.store.write(ALERTS_TABLE.name, self.lock_timeout_seconds) as tx:
            found = tx.execute("SELECT acknowledged FROM agent_alerts WHERE id = ?", [alert_id]).fetchone()
            if found is None:
                raise AlertNotFound(f"no alert with id {alert_id}")
            if found[0]:
                raise AlertAlreadyAcknowledged(f"alert {alert_id} is already acknowledged")
            tx.execute(
                "UPDATE agent_alerts SET acknowledged = ?, acknowledged_at = ?, acknowledged_by = ? WHERE id = ?",
                [True, _utc(now or utc_now()), by, alert_id],
            )
            row = self._rows(tx, " WHERE id = ?", [alert_id]).iloc[0].to_dict()
            tx.after_commit(self._publish)
        return row

    def mark_notified(self, alert_id: str) -> None:
        with self.store.write(ALERTS_TABLE.name, self.lock_timeout_seconds) as tx:
            tx.execute("UPDATE agent_alerts SET notified = ? WHERE id = ?", [True, alert_id])
            tx.after_commit(self._publish)

    # -- reads ------------------------------------------------------------------------------------
    def list(self, include_acknowledged: bool = True, alert_type: str | None = None) -> pd.DataFrame:
        """Alerts, newest first."""
        where, params = [], []
        if not include_acknowledged:
            where.append("NOT acknowledged")
        if alert_type:
            where.append("alert_type = ?")
            params.append(alert_type)
        with self.store.read() as tx:
            return self._rows(tx, (f" WHERE {' AND '.join(where)}" if where else ""), params)

    def get(self, alert_id: str) -> dict:
        with self.store.read() as tx:
            frame = self._rows(tx, " WHERE id = ?", [alert_id])
        if frame.empty:
            raise AlertNotFound(f"no alert with id {alert_id}")
        return frame.iloc[0].to_dict()

    # -- helpers ----------------------------------------------------------------------------------
    @staticmethod
    def _rows(tx: Tx, where: str = "", params=()) -> pd.DataFrame:
        return ALERTS_TABLE.select(tx, where, params)

    def _publish(self, tx: Tx) -> None:
        publish(tx, ALERTS_TABLE, self.paths)

    def _import_legacy(self) -> None:
        """Alerts of the former DuckDB store move into this one once (the file is renamed, never deleted)."""
        legacy = self.paths.root / "autonomy" / "alerts.duckdb"
        if not legacy.exists():
            return
        with self.store.write(ALERTS_TABLE.name, self.lock_timeout_seconds) as tx:
            if not legacy.exists():  # another writer imported it meanwhile
                return
            with duckdb.connect(str(legacy), read_only=True) as con:
                found = con.execute(f"SELECT {', '.join(ALERTS_TABLE.names)} FROM agent_alerts")
                names = [d[0] for d in found.description]
                rows = [dict(zip(names, row, strict=True)) for row in found.fetchall()]
            ALERTS_TABLE.insert(tx, rows)
            tx.after_commit(self._publish)
            tx.after_commit(lambda _: legacy.rename(legacy.with_name(legacy.name + ".imported")))
        log.info("imported %d alerts from %s into %s", len(rows), legacy, self.location)


# ---- notification ------------------------------------------------------------------------------


def notify_webhook(url: str | None, alert_row: dict, timeout_seconds: float = 5.0) -> tuple[bool, str]:
    """POST the alert as JSON. Never raises: returns (delivered, detail)."""
    if not url:
        return False, "no webhook configured"
    payload = {
        k: (v.isoformat() if isinstance(v, (datetime, pd.Timestamp)) else v) for k, v in alert_row.items()
    }
    body = json.dumps(payload, default=str).encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_seconds) as response:
            status = response.status
        return 200 <= status < 300, f"HTTP {status}"
    except Exception as error:  # a failing webhook never fails the pipeline
        return False, f"{type(error).__name__}: {error}"


def raise_and_notify(
    store: AlertStore, alert: Alert, webhook_url: str | None = None, now: datetime | None = None
) -> tuple[dict | None, str]:
    """Store the alert (deduplicated) and POST it to the webhook if one is configured."""
    row = store.raise_alert(alert, now=now)
    if row is None:
        return None, "suppressed (same condition already alerted)"
    delivered, detail = notify_webhook(webhook_url, row)
    if delivered:
        store.mark_notified(row["id"])
    return row, detail


# ---- failed runs ---------------------------------------------------------------------------------


def root_cause_line(error: Any) -> str:
    """The first line of the innermost cause of `error` (anything with `message`, `cause` and `cls_name`, such
    as Dagster's serialized errors): `ValueError: no events ...`; a deliberate `Failure` gives its text only."""
    while error.cause is not None:
        error = error.cause
    line = next((part.strip() for part in error.message.splitlines() if part.strip()), "")
    kind, sep, text = line.partition(": ")
    cls_name = getattr(error, "cls_name", None)
    if sep and cls_name and kind.rsplit(".", 1)[-1] == cls_name:  # drop the class's module path
        line = text if cls_name == "Failure" else f"{cls_name}: {text}"
    return line


def run_failure_message(run_id: str, causes: list[tuple[str, str]]) -> str:
    """An ERROR alert's message: each failed step with its root cause, then one sentence saying what to do."""
    what = "; ".join(f"{step}: {cause}" for step, cause in causes) or "the run failed"
    return (
        f"{what}. What to do: fix what this names, then re-execute run {run_id} from failure in the Dagster UI "
        "(Runs, the run, Re-execute)."
    )


# ---- detection ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DegradationRule:
    relative_drop: float = 0.10  # success rate falls by more than this, relative, from first to last window
    critical_drop: float = 0.25
    windows: int = 3
    window_days: int = 1
    min_samples: int = 30  # per agent and window


def window_success_rates(con: duckdb.DuckDBPyConnection, end_date, rule: DegradationRule) -> pd.DataFrame:
    """Success rate per agent in each of the last `rule.windows` windows of `window_days` ending at end_date
    (inclusive), from outcome_events. Columns: agent_name, window_index (0 = oldest), n, successes, success_rate."""
    span = rule.windows * rule.window_days
    sql = f"""
        WITH e AS (
            SELECT agent_name, (status = 'success')::INT AS ok,
                   {rule.windows - 1} - (date_diff('day', cast(event_date AS DATE), ?::DATE) // {rule.window_days})
                       AS window_index
            FROM outcome_events
            WHERE cast(event_date AS DATE) > ?::DATE - INTERVAL {span} DAY
              AND cast(event_date AS DATE) <= ?::DATE
        )
        SELECT agent_name, window_index, count(*) AS n, sum(ok) AS successes, avg(ok) AS success_rate
        FROM e GROUP BY ALL ORDER BY agent_name, window_index
    """
    return con.execute(sql, [end_date, end_date, end_date]).df()


def detect_degradation(rates: pd.DataFrame, rule: DegradationRule = DegradationRule()) -> list[Alert]:
    """PERFORMANCE_DEGRADATION alerts: an agent whose success rate fell by more than `relative_drop` (relative)
    from the first to the last of the windows, with at least `min_samples` events in each window."""
    if rates.empty:
        return []
    enough = rates[rates["n"] >= rule.min_samples]
    wide = enough.pivot(index="agent_name", columns="window_index", values="success_rate")
    needed = list(range(rule.windows))
    if not set(needed) <= set(wide.columns):
        return []
    wide = wide[needed].dropna()
    first, last = wide[0].to_numpy(float), wide[rule.windows - 1].to_numpy(float)
    drop = np.where(first > 0, (first - last) / np.where(first > 0, first, 1.0), 0.0)
    alerts = []
    for agent, d, f, last_rate, series in zip(wide.index, drop, first, last, wide.to_numpy(), strict=False):
        if d > rule.relative_drop:
            alerts.append(
                Alert(
                    alert_type="PERFORMANCE_DEGRADATION",
                    severity="CRITICAL" if d > rule.critical_drop else "WARNING",
                    title=f"{agent}: success rate down {d:.0%}",
                    message=(
                        f"{agent}'s success rate fell from {f:.3f} to {last_rate:.3f} ({d:.1%} relative) over the last "
                        f"{rule.windows} windows of {rule.window_days} day(s)"
                    ),
                    dedup_key=f"PERFORMANCE_DEGRADATION:{agent}",
                    agent_name=str(agent),
                    metric="relative_success_drop",
                    value=float(d),
                    threshold=rule.relative_drop,
                    details={"success_rates": [round(float(x), 4) for x in series]},
                )
            )
    return alerts


MILESTONE_CYCLES = (10, 50, 100, 500, 1000)


def milestone_alerts(
    total_cycles: int, best_success_rate: float | None = None, success_milestone: float = 0.7
) -> list[Alert]:
    # (title, message, key, metric, value, threshold) of every milestone reached
    reached = [
        (
            f"{m} learning cycles",
            f"the learning loop has completed {m} cycles",
            f"cycles:{m}",
            "learning_cycles",
            float(total_cycles),
            m,
        )
        for m in MILESTONE_CYCLES
        if total_cycles >= m
    ]
    if best_success_rate is not None and best_success_rate >= success_milestone:
        reached.append(
            (
                f"success rate above {success_milestone:.0%}",
                f"the live routing policy reached a success rate of {best_success_rate:.3f}",
                f"success:{success_milestone}",
                "success_rate",
                float(best_success_rate),
                success_milestone,
            )
        )
    return [
        Alert(
            "MILESTONE",
            "INFO",
            title,
            message,
            f"MILESTONE:{key}",
            metric=metric,
            value=value,
            threshold=limit,
        )
        for title, message, key, metric, value, limit in reached
    ]
