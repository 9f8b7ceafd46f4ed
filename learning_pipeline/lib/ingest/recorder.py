"""The Python SDK: agents record outcome events; a background thread lands them in micro-batches.

`OutcomeRecorder.record()` never blocks on I/O: it appends to a bounded in-memory buffer and returns. A
flusher thread writes a batch to the sink when `batch_size` events are waiting or `linger_seconds` have
passed. A failed write keeps the batch and retries with exponential backoff; nothing is dropped silently:
a full buffer raises `BufferFullError`, and `close()` raises `RecorderError` if events could not be written.

Sinks are pluggable: anything with `write_batch(list[dict]) -> None` (the default writes JSONL files into
the landing zone; a Kafka producer can be another).

Exit without `close()`: with `flush_on_exit=True` (the default) a recorder that is still open when the
program ends is flushed and closed:

- at interpreter exit (`atexit`: the end of the main module, `sys.exit()`, an uncaught exception);
- on SIGTERM, when the program has not installed a SIGTERM handler of its own: the recorder then installs one
  (from the main thread only) that flushes every open recorder and chains to what was there before (the
  default action, so the process still ends as killed by SIGTERM). The handler is removed again when the last
  open recorder is closed. A program with its own SIGTERM handler keeps it; if that handler exits
  (`sys.exit`), the atexit flush covers it.

Either way the flush waits at most `exit_timeout` seconds; events it could not write are reported on the
`learning_pipeline.lib.ingest.recorder` logger (ERROR, with the count), never dropped silently.
SIGKILL (and a hard crash or power loss) cannot be caught: it loses the events recorded but not yet written,
at most `batch_size` events or `linger_seconds` worth per recorder plus a batch being written, whose
half-written dot-file in the landing zone is never published. Everything written before is safe. Call
`flush()` at points that must be durable.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import signal
import threading
import time
import uuid
import weakref
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from learning_pipeline.lib.storage.lake import land_records

log = logging.getLogger(__name__)


class BufferFullError(RuntimeError):
    """The recorder's buffer is full: the sink cannot keep up (or keeps failing). The event was NOT recorded."""


class RecorderError(RuntimeError):
    """Events could not be written (raised by close() / flush() with the count that is still pending)."""


class RecorderClosedError(RuntimeError):
    """record() after close()."""


class EventSink(Protocol):
    def write_batch(self, events: list[dict]) -> None: ...


class LandingZoneSink:
    """Writes each batch as one atomically published JSONL file in the landing zone."""

    def __init__(self, landing_dir: str | Path, prefix: str = "sdk"):
        self.landing_dir = Path(landing_dir)
        self.prefix = prefix

    def write_batch(self, events: list[dict]) -> None:
        land_records(self.landing_dir, events, prefix=self.prefix)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class RecorderStats:
    recorded: int = 0
    written: int = 0
    batches: int = 0
    write_errors: int = 0
    pending: int = 0
    last_error: str | None = None


def _stat(name: str) -> property:
    """A read-only property of OutcomeRecorder: one number of its `stats`."""
    return property(lambda self: getattr(self.stats, name), doc=f"stats.{name}")


# -- flushing at exit -----------------------------------------------------------------------------
# Open recorders with flush_on_exit, flushed by one atexit hook and (where installed) one SIGTERM handler.
# Re-entrant locks: a signal handler runs on the main thread, possibly while that thread holds them.
_open_recorders: weakref.WeakSet[OutcomeRecorder] = weakref.WeakSet()
_registry_lock = threading.RLock()
_atexit_registered = False
_sigterm_previous: object = None  # the handler ours replaced (only meaningful while ours is installed)


def _snapshot() -> list[OutcomeRecorder]:
    with _registry_lock:
        return list(_open_recorders)


def _flush_open_recorders_at_exit() -> None:
    for recorder in _snapshot():
        recorder._close_at_exit("interpreter exit")


def _on_sigterm(signum, frame) -> None:
    for recorder in _snapshot():
        recorder._flush_at_exit("SIGTERM")
    previous = _sigterm_previous
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_IGN:
        return
    else:  # the default action: end the process as killed by the signal, as without us
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        time.sleep(1.0)
        os._exit(128 + signum)  # pragma: no cover - the signal ends the process first


def _register(recorder: OutcomeRecorder) -> None:
    global _atexit_registered, _sigterm_previous
    with _registry_lock:
        _open_recorders.add(recorder)
        if not _atexit_registered:
            atexit.register(_flush_open_recorders_at_exit)
            _atexit_registered = True
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread; atexit still applies
        current = signal.getsignal(signal.SIGTERM)
        if current == signal.SIG_DFL:  # the program has no handler of its own: ours flushes, then chains
            _sigterm_previous = current
            signal.signal(signal.SIGTERM, _on_sigterm)


def _unregister(recorder: OutcomeRecorder) -> None:
    with _registry_lock:
        _open_recorders.discard(recorder)
        if (
            not _open_recorders
            and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is _on_sigterm
        ):
            signal.signal(signal.SIGTERM, _sigterm_previous)


class OutcomeRecorder:
    """Thread-safe, non-blocking outcome recorder with a bounded buffer and micro-batch flushing."""

    def __init__(
        self,
        sink: EventSink | None = None,
        *,
        landing_dir: str | Path | None = None,
        batch_size: int = 500,
        linger_seconds: float = 1.0,
        max_buffer: int = 100_000,
        max_retries: int = 5,
        retry_backoff_seconds: float = 0.1,
        max_backoff_seconds: float = 5.0,
        flush_on_exit: bool = True,
        exit_timeout: float = 10.0,
    ):
        if sink is None:
            if landing_dir is None:
                raise ValueError("give a sink or a landing_dir")
            sink = LandingZoneSink(landing_dir)
        if batch_size < 1 or max_buffer < batch_size:
            raise ValueError("need batch_size >= 1 and max_buffer >= batch_size")
        self.sink = sink
        self.batch_size = batch_size
        self.linger_seconds = linger_seconds
        self.max_buffer = max_buffer
        self.max_retries = max_retries
        self.retry_backoff_seconds = retry_backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.exit_timeout = exit_timeout

        self._buffer: deque[dict] = deque()
        self._inflight = 0  # events taken from the buffer but not yet written
        # Re-entrant: the SIGTERM handler flushes on the main thread, which may be inside record() or flush().
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._closed = False
        self._stop = False
        self._flush_requested = 0
        self._failed_rounds = 0
        self._stop_event = threading.Event()
        self._oldest_at: float | None = None
        self._stats = RecorderStats()
        self._thread = threading.Thread(target=self._run, name="outcome-recorder", daemon=True)
        self._thread.start()
        if flush_on_exit:
            _register(self)

    # -- client side -----------------------------------------------------------------------
    def record(self, event: dict) -> str:
        """Queue one event (a dict); fills event_id and timestamp if missing. Returns the event_id."""
        if not isinstance(event, dict):
            raise TypeError(f"event must be a dict, not {type(event).__name__}")
        event = dict(event)
        if not event.get("event_id"):
            event["event_id"] = str(uuid.uuid4())
        if not event.get("timestamp"):
            event["timestamp"] = _now_iso()
        with self._lock:
            if self._closed:
                raise RecorderClosedError("the recorder is closed")
            if len(self._buffer) + self._inflight >= self.max_buffer:
                raise BufferFullError(
                    f"recorder buffer full ({self.max_buffer} events pending; last write error: "
                    f"{self._stats.last_error}); event {event['event_id']} was not recorded"
                )
            first = not self._buffer
            if first:
                self._oldest_at = time.monotonic()
            self._buffer.append(event)
            self._stats.recorded += 1
            if first or len(self._buffer) >= self.batch_size:  # start the linger clock, or a full batch
                self._wake.notify()
        return event["event_id"]

    def flush(self, timeout: float | None = None) -> None:
        """Write everything recorded so far.

        Raises RecorderError if a full round of retries failed meanwhile (the events stay buffered and
        are retried later) or if `timeout` passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            failures_before = self._failed_rounds
            self._flush_requested += 1
            self._wake.notify()
            try:
                while self._buffer or self._inflight:
                    if not self._thread.is_alive() or self._failed_rounds > failures_before:
                        break
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        break
                    self._idle.wait(timeout=0.5 if remaining is None else min(remaining, 0.5))
                pending = len(self._buffer) + self._inflight
            finally:
                self._flush_requested -= 1
        if pending:
            raise RecorderError(
                f"{pending} events could not be written; last error: {self._stats.last_error}"
            )

    def close(self, timeout: float | None = 60.0) -> None:
        """Flush everything and stop the background thread. Idempotent. Raises if events remain unwritten."""
        with self._lock:
            already = self._closed
            self._closed = True
        if not already:
            try:
                self.flush(timeout=timeout)
            finally:
                with self._lock:
                    self._stop = True
                    self._wake.notify_all()
                self._stop_event.set()
                self._thread.join(timeout=timeout)
                _unregister(self)  # only now: a SIGTERM during the flush above still waits for it
        else:
            pending = self.pending
            if pending:
                raise RecorderError(
                    f"{pending} events could not be written; last error: {self._stats.last_error}"
                )

    def __enter__(self) -> OutcomeRecorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _flush_at_exit(self, why: str) -> None:
        """Write what is buffered (within exit_timeout); report what could not be written."""
        try:
            self.flush(timeout=self.exit_timeout)
        except RecorderError as exc:
            log.error("OutcomeRecorder at %s: %s; these events are lost", why, exc)

    def _close_at_exit(self, why: str) -> None:
        try:
            self.close(timeout=self.exit_timeout)
        except RecorderError as exc:
            log.error("OutcomeRecorder at %s: %s; these events are lost", why, exc)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._buffer) + self._inflight

    @property
    def stats(self) -> RecorderStats:
        with self._lock:
            return dataclasses.replace(self._stats, pending=len(self._buffer) + self._inflight)

    recorded = _stat("recorded")
    written = _stat("written")
    batches = _stat("batches")
    write_errors = _stat("write_errors")

    # -- background side -------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._due():
                    if self._stop:
                        self._idle.notify_all()
                        return
                    if not self._buffer:
                        self._idle.notify_all()
                        self._wake.wait()
                    else:
                        wait = self.linger_seconds - (
                            time.monotonic() - (self._oldest_at or time.monotonic())
                        )
                        self._wake.wait(timeout=max(wait, 0.001))
                n = min(self.batch_size, len(self._buffer))
                batch = [self._buffer.popleft() for _ in range(n)]
                self._inflight = n
            ok = self._write_with_retries(batch)
            with self._lock:
                self._inflight = 0
                if ok:
                    self._stats.written += len(batch)
                    self._stats.batches += 1
                else:  # keep the batch at the head of the buffer, in order; flush()/close() report it
                    self._buffer.extendleft(reversed(batch))
                    self._failed_rounds += 1
                self._oldest_at = time.monotonic() if self._buffer else None
                self._idle.notify_all()
                if not ok and self._stop:
                    return
            if not ok:  # pause before the next round of retries (close() cuts the pause short)
                self._stop_event.wait(self.max_backoff_seconds)

    def _due(self) -> bool:
        if not self._buffer:
            return False
        if self._stop:
            return self._failed_rounds == 0 or self._flush_requested > 0
        if self._flush_requested or len(self._buffer) >= self.batch_size:
            return True
        return self._oldest_at is not None and time.monotonic() - self._oldest_at >= self.linger_seconds

    def _write_with_retries(self, batch: list[dict]) -> bool:
        delay = self.retry_backoff_seconds
        for attempt in range(self.max_retries + 1):
            try:
                self.sink.write_batch(batch)
                return True
            except Exception as exc:  # any sink failure: count it, back off, retry the same batch
                with self._lock:
                    self._stats.write_errors += 1
                    self._stats.last_error = f"{type(exc).__name__}: {exc}"
                if attempt < self.max_retries and not self._stop_event.wait(delay):
                    delay = min(delay * 2, self.max_backoff_seconds)
                else:
                    break
        return False
