"""Decisions are data: every served decision, logged with the probabilities it was drawn from.

The decision service writes one row per policy that scored a request: the served one (`served = true`,
stage live or canary, or cold_start without a model) and, with the same `decision_id`, each shadow
version (`served = false`). A row holds the request (task type, context), the eligible agents and the
probability of each (`agents`, `probabilities`, aligned), the chosen agent, the returned ranking, the
model version and its stage. Outcome events that carry the `decision_id` are joined to the served row,
so the propensity of the agent that acted comes from the log, not from the client.

Layout: decision_log/event_date=D/<time>-<id>.parquet, written by `DecisionLogger` in micro-batches off
the request path (fsynced, renamed into place), split by the UTC day of `decided_at`. Validation per day
(`validate_day`) keeps valid rows, de-duplicated on (decision_id, model_version, served), and
quarantines the rest with a reason.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from learning_pipeline.lib.storage.lake import LakePaths, new_batch_name, write_parquet_atomic

log = logging.getLogger(__name__)

DECISION_LOG_DIR = "decision_log"
DECISIONS_TABLE = "agent_decisions"
DECISION_QUARANTINE_TABLE = "quarantined_decisions"
STAGES_SERVED = ("live", "canary", "cold_start")
PROBABILITY_TOLERANCE = 1e-6

DECISION_SCHEMA = pa.schema(
    [
        pa.field("decision_id", pa.string()),
        pa.field("decided_at", pa.timestamp("us", tz="UTC")),
        pa.field("task_type", pa.string()),
        pa.field("context", pa.string()),  # JSON object
        pa.field("agents", pa.list_(pa.string())),  # the eligible agents
        pa.field("probabilities", pa.list_(pa.float64())),  # selection probability of each, summing to 1
        pa.field("chosen_agent", pa.string()),
        pa.field("ranking", pa.list_(pa.string())),  # the agents returned, best first
        pa.field("model_version", pa.int64()),  # NULL: cold start without a model
        pa.field("stage", pa.string()),  # live / canary / shadow / cold_start
        pa.field("served", pa.bool_()),
    ]
)
DECISION_QUARANTINE_SCHEMA = DECISION_SCHEMA.append(pa.field("reason", pa.string()))


def decision_log_dir(paths: LakePaths) -> Path:
    return paths.root / DECISION_LOG_DIR


def write_decisions(paths: LakePaths, rows: list[dict]) -> list[Path]:
    """Publish rows as one Parquet file per UTC day (atomically, durably)."""
    if not rows:
        return []
    table = pa.Table.from_pylist(rows, schema=DECISION_SCHEMA)
    days = pc.strftime(table["decided_at"], format="%Y-%m-%d")
    written = []
    for day in pc.unique(days).to_pylist():
        part = table.filter(pc.equal(days, day))
        path = decision_log_dir(paths) / f"event_date={day}" / new_batch_name("decisions", "parquet")
        written.append(write_parquet_atomic(path, part))
    return written


@dataclass
class LoggerStats:
    logged: int = 0
    failed: int = 0
    files: int = 0


class DecisionLogger:
    """Micro-batches decision rows to the decision log from a background thread.

    `log` never blocks and never raises: the request path only appends to a queue. A batch is written when
    it holds `batch_size` rows or `linger_seconds` have passed; `close()` (also at interpreter exit) writes
    what is left. A failed write is retried with the next batch and counted in `stats.failed`; rows are
    kept in memory up to `max_pending`, beyond which the oldest are counted as failed and dropped.
    """

    def __init__(
        self,
        paths: LakePaths,
        batch_size: int = 2000,
        linger_seconds: float = 0.5,
        max_pending: int = 1_000_000,
        on_failure: Callable[[str, int], None] | None = None,
    ):
        self.paths = paths
        self.on_failure = (
            on_failure  # (error text, rows kept): e.g. raise an alert; never raises into the logger
        )
        self.batch_size = batch_size
        self.linger_seconds = linger_seconds
        self.max_pending = max_pending
        self.stats = LoggerStats()
        self._queue: queue.SimpleQueue[list[dict] | None] = queue.SimpleQueue()
        self._pending: list[dict] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="decision-logger", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def log(self, rows: list[dict]) -> None:
        if not self._closed:
            self._queue.put(rows)

    def _drain(self, timeout: float) -> bool:
        """Move queued rows to the pending batch; False once the stop marker was seen."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                item = (
                    self._queue.get(timeout=max(remaining, 0.0))
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                return True
            if item is None:
                return False
            self._pending.extend(item)
            if len(self._pending) >= self.batch_size:
                return True

    def _flush(self) -> None:
        if not self._pending:
            return
        try:
            self.stats.files += len(write_decisions(self.paths, self._pending))
            self.stats.logged += len(self._pending)
            self._pending = []
        except Exception as error:  # kept for the next attempt; the request path never sees it
            log.warning("decision log write failed (%d rows kept): %s", len(self._pending), error)
            if self.on_failure is not None:
                try:
                    self.on_failure(f"{type(error).__name__}: {error}", len(self._pending))
                except Exception as hook_error:  # an alert that cannot be raised must not stop logging
                    log.warning("decision log failure hook failed: %s", hook_error)
            overflow = len(self._pending) - self.max_pending
            if overflow > 0:
                self.stats.failed += overflow
                self._pending = self._pending[overflow:]

    def _run(self) -> None:
        running = True
        while running:
            running = self._drain(self.linger_seconds)
            self._flush()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything logged so far is written (for tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while (not self._queue.empty() or self._pending) and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self, timeout: float = 10.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)
        self.stats.failed += len(self._pending)


# ---- validation of one day ----------------------------------------------------------------------

_REASONS = f"""
    CASE
        WHEN decision_id IS NULL OR decision_id = '' THEN 'missing_decision_id'
        WHEN decided_at IS NULL THEN 'missing_decided_at'
        WHEN agents IS NULL OR probabilities IS NULL OR len(agents) = 0 THEN 'missing_probabilities'
        WHEN len(agents) <> len(probabilities) THEN 'probabilities_misaligned'
        WHEN list_min(probabilities) <= 0 OR list_max(probabilities) > 1 THEN 'probability_out_of_range'
        WHEN abs(list_sum(probabilities) - 1) > {PROBABILITY_TOLERANCE} THEN 'probabilities_do_not_sum_to_1'
        WHEN chosen_agent IS NULL OR NOT list_contains(agents, chosen_agent) THEN 'chosen_agent_not_eligible'
        WHEN stage IS NULL OR stage NOT IN ('live', 'canary', 'shadow', 'cold_start') THEN 'unknown_stage'
        WHEN served IS NULL THEN 'missing_served'
    END
"""


@dataclass
class DecisionDay:
    accepted: pa.Table
    quarantined: pa.Table
    received: int
    duplicates: int


def validate_day(paths: LakePaths, day: str) -> DecisionDay:
    """Valid, de-duplicated decision rows of one UTC day, and the rejected ones with their reason."""
    files = sorted((decision_log_dir(paths) / f"event_date={day}").glob("*.parquet"))
    if not files:
        empty = DECISION_SCHEMA.empty_table()
        return DecisionDay(empty, DECISION_QUARANTINE_SCHEMA.empty_table(), 0, 0)
    names = ", ".join(f'"{c}"' for c in DECISION_SCHEMA.names)
    with duckdb.connect() as con:
        source = f"read_parquet({[str(f) for f in files]}, union_by_name = true)"
        con.execute(f"CREATE TEMP TABLE checked AS SELECT {names}, {_REASONS} AS reason FROM {source}")
        received = con.execute("SELECT count(*) FROM checked").fetchone()[0]
        quarantined = con.execute(
            f"SELECT {names}, reason FROM checked WHERE reason IS NOT NULL"
        ).to_arrow_table()
        valid = con.execute(
            f"""SELECT {names} FROM checked WHERE reason IS NULL
                QUALIFY row_number() OVER (PARTITION BY decision_id, model_version, served ORDER BY decided_at) = 1
                ORDER BY decided_at, decision_id"""
        ).to_arrow_table()
    duplicates = received - quarantined.num_rows - valid.num_rows
    return DecisionDay(
        valid.cast(DECISION_SCHEMA),
        quarantined.cast(DECISION_QUARANTINE_SCHEMA),
        received,
        duplicates,
    )


def days_with_decisions(paths: LakePaths) -> list[str]:
    root = decision_log_dir(paths)
    if not root.exists():
        return []
    return sorted(p.name.split("=", 1)[1] for p in root.glob("event_date=*") if p.is_dir())
