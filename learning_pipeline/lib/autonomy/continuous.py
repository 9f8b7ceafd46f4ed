"""Continuous learning: when to request a learning cycle, convergence, and the data shift that ends it.

A cycle is requested when all of these hold (checked in this order, the first failing one is the reason):
    1. not converged, or a data shift was detected since convergence (which wakes the loop);
    2. the day's cap `max_iterations_per_day` is not reached (the count resets at UTC midnight);
    3. `min_iteration_gap_minutes` have passed since the last cycle (cooldown);
    4. at least `min_new_events` landed (staging-log records) since the last cycle.
Convergence: the mean improvement of the last `convergence_cycles` evaluated cycles since the loop last woke
is below `convergence_threshold`.

State lives in the `learning_cycles` table of the state store (`lib/storage/state_store.py`; one row per
decision that changes state: `cycle_requested`, `converged`, `woken`; its lake snapshot is
`lake/learning_cycles/data.parquet`), so a restarted sensor (or one whose cursor was reset) reaches the same
decisions. The sensor cursor is only a cache of the last staging sequence it saw.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import duckdb
import pandas as pd

from learning_pipeline.lib.storage.lake import LakePaths
from learning_pipeline.lib.storage.state_store import StateStore, TableSpec, open_state_store, publish

# event_type: cycle_requested / converged / woken; trigger: continuous_learning_sensor / learning_cycle_schedule
LEARNING_CYCLES_TABLE = TableSpec.parse(
    "learning_cycles",
    "id text primary key not null, event_type text not null, at timestamp not null, trigger text, partition_key "
    "text, run_key text, staging_seq int, new_events int, mean_improvement float, reason text, details text",
    order_by="at, id",
)
CYCLE_REQUESTED, CONVERGED, WOKEN = "cycle_requested", "converged", "woken"


@dataclass(frozen=True)
class LoopSettings:
    min_new_events: int = 100
    min_iteration_gap_minutes: float = 60.0
    max_iterations_per_day: int = 10
    convergence_threshold: float = 0.01
    convergence_cycles: int = 3
    # data shift: two-proportion z-test per (task_type, agent), events since convergence vs the window before it
    shift_z: float = 4.0
    shift_window_hours: float = 48.0
    shift_min_samples: int = 30

    def __post_init__(self):
        if self.min_new_events < 0 or self.max_iterations_per_day < 1 or self.min_iteration_gap_minutes < 0:
            raise ValueError(
                "min_new_events >= 0, max_iterations_per_day >= 1, min_iteration_gap_minutes >= 0"
            )
        if self.convergence_cycles < 1:
            raise ValueError("convergence_cycles must be >= 1")


@dataclass
class LoopState:
    """What the decision needs, derived from the learning_cycles table and the staging log."""

    last_cycle_at: datetime | None = None
    last_cycle_seq: int = 0
    cycles_today: int = 0
    converged_at: datetime | None = None  # set while converged
    awake_since: datetime | None = None  # last wake-up (or None: since the beginning)
    evaluations_at_wake: int = 0  # evaluated cycles recorded before the last wake-up (they no longer count)
    total_cycles: int = 0


@dataclass
class Decision:
    run: bool
    reason: str
    new_events: int = 0
    converge: bool = False  # record a `converged` row
    wake: bool = False  # record a `woken` row
    mean_improvement: float | None = None
    details: dict = field(default_factory=dict)


def _utc(value) -> datetime | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    value = pd.Timestamp(value).to_pydatetime()
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# ---- the learning_cycles table -------------------------------------------------------------------


def _store(paths: LakePaths) -> StateStore:
    store = open_state_store(paths)
    store.ensure(LEARNING_CYCLES_TABLE, paths)  # imports the former lake table once
    return store


def read_learning_cycles(paths: LakePaths) -> pd.DataFrame:
    with _store(paths).read() as tx:
        return LEARNING_CYCLES_TABLE.select(tx)


def record_cycle_event(
    paths: LakePaths,
    event_type: str,
    at: datetime,
    trigger: str,
    *,
    partition_key=None,
    run_key=None,
    staging_seq=None,
    new_events=None,
    mean_improvement=None,
    reason=None,
    details: dict | None = None,
) -> dict:
    row = {
        "id": uuid.uuid4().hex,
        "event_type": event_type,
        "at": _utc(at),
        "trigger": trigger,
        "partition_key": partition_key,
        "run_key": run_key,
        "staging_seq": staging_seq,
        "new_events": new_events,
        "mean_improvement": mean_improvement,
        "reason": reason,
        "details": json.dumps(details or {}, default=str),
    }
    with _store(paths).write(LEARNING_CYCLES_TABLE.name) as tx:
        LEARNING_CYCLES_TABLE.insert(tx, [row])
        tx.after_commit(lambda tx: publish(tx, LEARNING_CYCLES_TABLE, paths))
    return row


def loop_state(cycles: pd.DataFrame, now: datetime) -> LoopState:
    now = _utc(now)
    state = LoopState()
    if cycles.empty:
        return state
    cycles = cycles.sort_values("at")
    requested = cycles[cycles["event_type"] == CYCLE_REQUESTED]
    state.total_cycles = len(requested)
    if not requested.empty:
        last = requested.iloc[-1]
        state.last_cycle_at = _utc(last["at"])
        state.last_cycle_seq = int(requested["staging_seq"].fillna(0).max())
        at = pd.to_datetime(requested["at"], utc=True)
        midnight = pd.Timestamp(now.date(), tz="UTC")
        state.cycles_today = int(((at >= midnight) & (at <= pd.Timestamp(now))).sum())
    marks = cycles[cycles["event_type"].isin([CONVERGED, WOKEN])]
    if not marks.empty:
        last_mark = marks.iloc[-1]
        if last_mark["event_type"] == CONVERGED:
            state.converged_at = _utc(last_mark["at"])
        woken = marks[marks["event_type"] == WOKEN]
        if not woken.empty:
            state.awake_since = _utc(woken.iloc[-1]["at"])
            state.evaluations_at_wake = int(
                json.loads(woken.iloc[-1]["details"] or "{}").get("evaluations", 0)
            )
    return state


# ---- convergence and data shift -------------------------------------------------------------------


def recent_improvements(learning_events: pd.DataFrame, skip: int, n: int) -> tuple[list[float], int]:
    """Improvements of the last `n` evaluated cycles after the first `skip` ones (oldest first), and the number
    of evaluated cycles. Counting, not timestamps, keeps this independent of the clock the sensor runs on."""
    if learning_events.empty:
        return [], 0
    ev = learning_events[learning_events["event_type"].isin(["evaluation_accepted", "evaluation_rejected"])]
    ev = ev.sort_values("created_at")
    values = ev["improvement"].astype(float).fillna(0.0).tolist()
    return values[skip:][-n:], len(values)


@dataclass
class ShiftResult:
    shifted: bool
    reason: str
    max_abs_z: float = 0.0
    agent_name: str | None = None
    table: pd.DataFrame = field(default_factory=pd.DataFrame)


def detect_shift(
    con: duckdb.DuckDBPyConnection, split: datetime, now: datetime, settings: LoopSettings = LoopSettings()
) -> ShiftResult:
    """Two-proportion z-test per (task_type, agent): success rate of events in the recent window
    [max(split, now - window), now) vs the window before the split [split - window, split).

    Events are read from outcome_events by their timestamp (only the event_date partitions in range are
    scanned); agents need `shift_min_samples` events on both sides.
    """
    split, now = _utc(split), _utc(now)
    window = timedelta(hours=settings.shift_window_hours)
    start = split - window
    recent = max(split, now - window)  # the recent window: what arrived lately, after the split
    sql = """
        SELECT coalesce(task_type, action_type, 'unspecified') AS task_type, agent_name,
               count(*) FILTER (WHERE timestamp < ?) AS n_before,
               count(*) FILTER (WHERE timestamp < ? AND status = 'success') AS s_before,
               count(*) FILTER (WHERE timestamp >= ?) AS n_after,
               count(*) FILTER (WHERE timestamp >= ? AND status = 'success') AS s_after
        FROM outcome_events
        WHERE cast(event_date AS DATE) BETWEEN ?::DATE AND ?::DATE AND timestamp >= ? AND timestamp < ?
        GROUP BY ALL
    """
    try:
        t = con.execute(sql, [split, split, recent, recent, start.date(), now.date(), start, now]).df()
    except duckdb.CatalogException:
        return ShiftResult(False, "no outcome_events yet")
    t = t[(t["n_before"] >= settings.shift_min_samples) & (t["n_after"] >= settings.shift_min_samples)].copy()
    if t.empty:
        return ShiftResult(
            False,
            f"fewer than {settings.shift_min_samples} events per agent on both sides of "
            f"{split:%Y-%m-%d %H:%M}",
        )
    p1, p2 = t["s_before"] / t["n_before"], t["s_after"] / t["n_after"]
    pooled = (t["s_before"] + t["s_after"]) / (t["n_before"] + t["n_after"])
    se = (pooled * (1 - pooled) * (1 / t["n_before"] + 1 / t["n_after"])) ** 0.5
    t["rate_before"], t["rate_after"] = p1, p2
    t["z"] = ((p2 - p1) / se.where(se > 0)).fillna(0.0)
    top = t.loc[t["z"].abs().idxmax()]
    z = float(abs(top["z"]))
    if z >= settings.shift_z:
        return ShiftResult(
            True,
            f"data shift: {top['agent_name']} on {top['task_type']} success rate {top['rate_before']:.3f} -> "
            f"{top['rate_after']:.3f} (|z| = {z:.1f} >= {settings.shift_z})",
            z,
            str(top["agent_name"]),
            t,
        )
    return ShiftResult(
        False, f"no data shift (max |z| = {z:.1f} < {settings.shift_z})", z, str(top["agent_name"]), t
    )


# ---- the decision --------------------------------------------------------------------------------


def decide(
    now: datetime,
    state: LoopState,
    new_events: int,
    improvements: list[float],
    settings: LoopSettings = LoopSettings(),
    shift: ShiftResult | None = None,
) -> Decision:
    """The continuous-learning decision for one tick (pure: everything it needs is passed in).

    `improvements`: the last evaluated cycles' improvements since the loop last woke (oldest first);
    `shift`: the data-shift test, needed only while converged.
    """
    now = _utc(now)
    wake = False
    if state.converged_at is not None:
        if shift is None or not shift.shifted:
            why = shift.reason if shift is not None else "no shift test"
            return Decision(
                False,
                f"converged since {state.converged_at:%Y-%m-%d %H:%M} UTC; paused until a data shift ({why})",
                new_events,
            )
        wake = True
    elif len(improvements) >= settings.convergence_cycles:
        mean = sum(improvements[-settings.convergence_cycles :]) / settings.convergence_cycles
        if mean < settings.convergence_threshold:
            return Decision(
                False,
                f"converged: mean improvement of the last {settings.convergence_cycles} cycles "
                f"{mean:+.4f} < {settings.convergence_threshold}",
                new_events,
                converge=True,
                mean_improvement=mean,
            )
    woke = f"{shift.reason}; woke up. " if wake else ""
    if state.cycles_today >= settings.max_iterations_per_day:
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        return Decision(
            False,
            f"{woke}daily cap reached: {state.cycles_today}/{settings.max_iterations_per_day} "
            f"cycles today; resets at {midnight:%Y-%m-%d %H:%M} UTC",
            new_events,
            wake=wake,
        )
    if state.last_cycle_at is not None:
        ready = state.last_cycle_at + timedelta(minutes=settings.min_iteration_gap_minutes)
        if now < ready:
            left = (ready - now).total_seconds() / 60
            return Decision(
                False,
                f"{woke}cooldown: last cycle at {state.last_cycle_at:%H:%M} UTC, next allowed at "
                f"{ready:%Y-%m-%d %H:%M} UTC ({left:.0f} min left)",
                new_events,
                wake=wake,
            )
    if new_events < settings.min_new_events:
        return Decision(
            False,
            f"{woke}{new_events} new events since the last cycle < min_new_events {settings.min_new_events}",
            new_events,
            wake=wake,
        )
    return Decision(
        True,
        f"{woke}{new_events} new events since the last cycle (>= {settings.min_new_events}); "
        f"cycle {state.cycles_today + 1}/{settings.max_iterations_per_day} today",
        new_events,
        wake=wake,
    )
