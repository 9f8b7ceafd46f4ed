"""Kafka in: a micro-batch consumer of the outcome topic into the landing zone, and its settings.

Consumer (`consume`): reads the outcome topic in micro-batches (up to `batch_size` messages or
`batch_timeout` seconds), lands each batch as one raw-lines Parquet file (`raw_record` = the message value
as text, `source_ref` = `topic/partition/offset`) and only then commits the batch's offsets, synchronously.
A crash between the two re-delivers the batch: the events are landed twice and de-duplication by event_id
absorbs it. No event is lost, and nothing is parsed here: staging parses every record once, and a message
that is not a JSON object reaches the quarantine as `malformed_json` with its topic, partition and offset.

A value that is not valid UTF-8 is landed as `NON_UTF8_PREFIX` + the value decoded with backslash escapes
(e.g. `\\xff`), so it can never pass as JSON and the quarantine shows both the reason and the bytes. A null
value (tombstone) is landed as a null record, which staging quarantines as an empty record.

Unreachable broker: `consume` first waits up to `connect_timeout` seconds (KAFKA_CONNECT_TIMEOUT_SECONDS,
default 30) for the broker to answer a metadata request, and raises `BrokerUnreachableError` with one clear
message (the servers, how long it waited, librdkafka's last error) if it never does. The same bound applies
later: when librdkafka reports every broker down, one warning is logged, and if no broker answers within
`connect_timeout` seconds the consumer stops with `BrokerUnreachableError` (what it landed but could not
commit is re-delivered after a restart; de-duplication absorbs it). librdkafka's own connection-failure lines
(one per reconnect attempt, many per second) are logged at DEBUG only; their text is kept for that message.

The producer side (`KafkaSink`) is in `kafka_sink.py`.

Needs the `kafka` extra (`pip install -e .[kafka]`, confluent-kafka).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from learning_pipeline.lib.storage.lake import land_raw_lines

log = logging.getLogger(__name__)

NON_UTF8_PREFIX = "!non-utf8: "
LANDING_PREFIX = "kafka"
FALLBACK_PREFIX = "kafka-fallback"

ENV_BOOTSTRAP = "KAFKA_BOOTSTRAP_SERVERS"
ENV_TOPIC = "KAFKA_OUTCOME_TOPIC"
ENV_GROUP = "KAFKA_CONSUMER_GROUP"
ENV_BATCH_SIZE = "MODEL_BATCH_SIZE"
ENV_BATCH_TIMEOUT = "MODEL_BATCH_TIMEOUT"
ENV_SESSION_TIMEOUT = "KAFKA_SESSION_TIMEOUT_MS"
ENV_OFFSET_RESET = "KAFKA_AUTO_OFFSET_RESET"
ENV_EXTRA_CONFIG = "KAFKA_EXTRA_CONFIG"
ENV_PRODUCER_BATCH = "KAFKA_BATCH_SIZE"
ENV_LINGER = "KAFKA_LINGER_MS"
ENV_COMPRESSION = "KAFKA_COMPRESSION"
ENV_RETRIES = "KAFKA_MAX_RETRIES"
ENV_DELIVERY_TIMEOUT = "KAFKA_DELIVERY_TIMEOUT_MS"
ENV_CONNECT_TIMEOUT = "KAFKA_CONNECT_TIMEOUT_SECONDS"
# KafkaSettings field -> the environment variable `KafkaSettings.from_env` reads it from (extra_config: ENV_EXTRA_CONFIG)
ENV_VARS = {
    "bootstrap_servers": ENV_BOOTSTRAP,
    "topic": ENV_TOPIC,
    "group_id": ENV_GROUP,
    "batch_size": ENV_BATCH_SIZE,
    "batch_timeout": ENV_BATCH_TIMEOUT,
    "session_timeout_ms": ENV_SESSION_TIMEOUT,
    "auto_offset_reset": ENV_OFFSET_RESET,
    "producer_batch_size": ENV_PRODUCER_BATCH,
    "linger_ms": ENV_LINGER,
    "compression": ENV_COMPRESSION,
    "max_retries": ENV_RETRIES,
    "delivery_timeout_ms": ENV_DELIVERY_TIMEOUT,
    "connect_timeout": ENV_CONNECT_TIMEOUT,
}


class BrokerUnreachableError(RuntimeError):
    """No Kafka broker answered within the connect timeout (at start, or after all brokers went down)."""


def _kafka():
    try:
        import confluent_kafka
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "Kafka support needs the 'kafka' extra: pip install -e '.[kafka]' (confluent-kafka)"
        ) from exc
    return confluent_kafka


def _env_value(env: Mapping[str, str], name: str, default: Any) -> Any:
    """Environment variable `name` read as the type of `default` (str, int or float seconds); unset = default."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if isinstance(default, str):
        return raw
    try:
        return type(default)(raw)
    except ValueError as exc:
        what = "an integer" if isinstance(default, int) else "a number of seconds"
        raise ValueError(f"{name} must be {what}, got {raw!r}") from exc


def _env_extra(env: Mapping[str, str]) -> dict[str, Any]:
    raw = env.get(ENV_EXTRA_CONFIG, "").strip()
    if not raw:
        return {}
    try:
        extra = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{ENV_EXTRA_CONFIG} must be a JSON object of librdkafka properties: {exc}") from exc
    if not isinstance(extra, dict):
        raise ValueError(f"{ENV_EXTRA_CONFIG} must be a JSON object of librdkafka properties")
    return extra


@dataclass(frozen=True)
class KafkaSettings:
    """Where the outcome events are and how to read and write them.

    batch_size / batch_timeout: a landed batch holds up to `batch_size` messages, or whatever arrived within
    `batch_timeout` seconds (MODEL_BATCH_SIZE / MODEL_BATCH_TIMEOUT).
    session_timeout_ms: the group session timeout; a consumer that dies without leaving the group holds its
    partitions this long. Kept short so a restarted consumer resumes quickly.
    connect_timeout: seconds the consumer waits for a broker to answer, at start and after losing all
    brokers, before it gives up with `BrokerUnreachableError` (KAFKA_CONNECT_TIMEOUT_SECONDS).
    extra_config: further librdkafka properties for both consumer and producer (security, SASL, ...).
    """

    bootstrap_servers: str = "localhost:9092"
    topic: str = "agent-outcomes"
    group_id: str = "learning-pipeline"
    batch_size: int = 1000
    batch_timeout: float = 5.0
    session_timeout_ms: int = 10_000
    auto_offset_reset: str = "earliest"
    producer_batch_size: int = 100
    linger_ms: int = 100
    compression: str = "gzip"
    max_retries: int = 3
    delivery_timeout_ms: int = 30_000
    connect_timeout: float = 30.0
    extra_config: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.bootstrap_servers:
            raise ValueError(f"Kafka bootstrap servers are empty (set {ENV_BOOTSTRAP})")
        if not self.topic:
            raise ValueError(f"Kafka topic is empty (set {ENV_TOPIC})")
        if self.batch_size < 1:
            raise ValueError(f"{ENV_BATCH_SIZE} must be >= 1, got {self.batch_size}")
        if self.batch_timeout <= 0:
            raise ValueError(f"{ENV_BATCH_TIMEOUT} must be > 0 seconds, got {self.batch_timeout}")
        if not self.connect_timeout > 0:
            raise ValueError(f"{ENV_CONNECT_TIMEOUT} must be > 0 seconds, got {self.connect_timeout}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> KafkaSettings:
        env = os.environ if env is None else env
        fields = cls.__dataclass_fields__
        values = {name: _env_value(env, var, fields[name].default) for name, var in ENV_VARS.items()}
        values["extra_config"] = _env_extra(env)
        values.update(overrides)
        return cls(**values)

    def consumer_config(self) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": self.auto_offset_reset,
            "session.timeout.ms": self.session_timeout_ms,
            "client.id": "learning-pipeline-consumer",
            **self.extra_config,
        }

    def producer_config(self) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "acks": "all",
            "enable.idempotence": False,
            "linger.ms": self.linger_ms,
            "batch.num.messages": self.producer_batch_size,
            "compression.type": self.compression,
            "message.send.max.retries": self.max_retries,
            "message.timeout.ms": self.delivery_timeout_ms,
            "client.id": "learning-pipeline-producer",
            **self.extra_config,
        }


@dataclass
class ConsumeResult:
    """What one `consume` call did."""

    batches: int = 0
    messages: int = 0
    non_utf8: int = 0
    null_values: int = 0
    errors: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    committed: dict[str, int] = field(default_factory=dict)
    commit_failures: int = 0
    stopped_by: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "messages": self.messages,
            "non_utf8": self.non_utf8,
            "null_values": self.null_values,
            "errors": len(self.errors),
            "commit_failures": self.commit_failures,
            "files": len(self.files),
            "stopped_by": self.stopped_by,
        }


def decode_values(values: list[bytes | None]) -> tuple[list[str | None], int, int]:
    """Message values as text: UTF-8, else a marked backslash-escaped form; null stays null.

    Returns the texts, the number of non-UTF-8 values and the number of null values.
    """
    nulls = sum(v is None for v in values)
    try:
        return [None if v is None else v.decode("utf-8") for v in values], 0, nulls
    except UnicodeDecodeError:
        pass
    texts: list[str | None] = []
    bad = 0
    for v in values:
        if v is None:
            texts.append(None)
            continue
        try:
            texts.append(v.decode("utf-8"))
        except UnicodeDecodeError:
            bad += 1
            texts.append(NON_UTF8_PREFIX + v.decode("utf-8", errors="backslashreplace"))
    return texts, bad, nulls


def _tp_key(topic: str, partition: int) -> str:
    return f"{topic}/{partition}"


# librdkafka log facilities that report a failed connection attempt: one line per reconnect, many a second.
_CONNECTION_FACILITIES = frozenset({"FAIL"})


class _LibrdkafkaLog:
    """librdkafka's log lines through `log`, with connection failures demoted to DEBUG; the last one is kept so
    the caller can put it in its single message about an unreachable broker."""

    def __init__(self, logger: logging.Logger):
        self.logger = logger
        self.last_connection_error: str | None = None

    def log(self, level: int, fmt: str, *args) -> None:
        facility = args[0] if args else ""
        if facility in _CONNECTION_FACILITIES:
            self.last_connection_error = str(args[-1]) if args else fmt
            level = logging.DEBUG
        self.logger.log(level, fmt, *args)


class _BatchConsumer:
    """A subscribed consumer that lands batches and commits what it landed."""

    def __init__(
        self,
        settings: KafkaSettings,
        landing_dir: Path,
        topics: list[str] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ):
        ck = _kafka()
        self.ck = ck
        self.settings = settings
        self.landing_dir = Path(landing_dir)
        self.librdkafka_log = _LibrdkafkaLog(log)
        self.last_error: str | None = None
        self.down_since: float | None = None  # monotonic time librdkafka reported all brokers down
        self.starting = True  # during the start-up wait, which reports on its own
        config = settings.consumer_config()
        config["error_cb"] = self._on_error
        self.consumer = ck.Consumer(config, logger=self.librdkafka_log)
        self.assigned: set[tuple[str, int]] = set()
        # Offsets landed but not yet committed (a failed commit is retried on the next commit or on revoke).
        self.pending: dict[tuple[str, int], int] = {}
        self.result = ConsumeResult()
        try:
            self._wait_for_broker(should_stop)
        except BaseException:
            self.consumer.close()
            raise
        self.consumer.subscribe(
            topics or [settings.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    # -- broker reachability -------------------------------------------------------------------
    def _on_error(self, err) -> None:
        """librdkafka's error callback (runs inside consume/poll on this thread)."""
        self.last_error = err.str()
        code = err.code()
        if self.starting:
            return
        if code == self.ck.KafkaError._ALL_BROKERS_DOWN:
            if self.down_since is None:
                self.down_since = time.monotonic()
                log.warning(
                    "all Kafka brokers (%s) are unreachable (%s); waiting up to %.0f s for one to come back",
                    self.settings.bootstrap_servers,
                    self._cause(),
                    self.settings.connect_timeout,
                )
        elif code != self.ck.KafkaError._TRANSPORT:  # transport errors repeat per reconnect: kept, not logged
            log.warning("kafka consumer: %s", err.str())

    def _cause(self) -> str:
        return self.librdkafka_log.last_connection_error or self.last_error or "no answer"

    def _answers(self, timeout: float) -> bool:
        """True if a broker answers a metadata request within `timeout` seconds."""
        try:
            self.consumer.list_topics(timeout=max(timeout, 0.1))
        except self.ck.KafkaException as exc:
            self.last_error = self.last_error or str(exc)
            return False
        return True

    def _unreachable(self, waited: float) -> BrokerUnreachableError:
        return BrokerUnreachableError(
            f"cannot reach the Kafka broker(s) at {self.settings.bootstrap_servers}: no answer within "
            f"{waited:.0f} s (last error: {self._cause()}). Check {ENV_BOOTSTRAP} / --bootstrap-servers and "
            f"that the broker is up; {ENV_CONNECT_TIMEOUT} / --connect-timeout sets how long to wait."
        )

    def _wait_for_broker(self, should_stop: Callable[[], bool]) -> None:
        """At start: wait up to connect_timeout for a broker to answer (a stop request ends the wait early)."""
        started = time.monotonic()
        deadline = started + self.settings.connect_timeout
        while not self._answers(min(deadline - time.monotonic(), 1.0)):
            self.consumer.poll(0)  # serves librdkafka's queued log lines and errors: the cause of the failure
            if should_stop():
                return
            if time.monotonic() >= deadline:
                raise self._unreachable(time.monotonic() - started)
        self.consumer.poll(0)  # serve the errors queued while waiting; they are over
        self.starting = False

    def check_broker(self) -> None:
        """Between batches: if all brokers were reported down, see whether one answers again; give up with
        BrokerUnreachableError once they have been down for connect_timeout seconds."""
        if self.down_since is None:
            return
        if self._answers(1.0):
            log.info("Kafka broker reachable again after %.0f s", time.monotonic() - self.down_since)
            self.down_since = None
            return
        down_for = time.monotonic() - self.down_since
        if down_for >= self.settings.connect_timeout:
            raise self._unreachable(down_for)

    # Rebalance callbacks run inside consume(), between our batches: everything landed is committed then.
    def _on_assign(self, consumer, partitions) -> None:
        self.assigned.update((tp.topic, tp.partition) for tp in partitions)
        log.info("assigned %s", sorted(self.assigned))

    def _on_revoke(self, consumer, partitions) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        self._commit({k: v for k, v in self.pending.items() if k in revoked})
        for key in revoked:
            self.pending.pop(key, None)
        self.assigned -= revoked
        log.info("revoked %s", sorted(revoked))

    def _on_lost(self, consumer, partitions) -> None:
        lost = {(tp.topic, tp.partition) for tp in partitions}
        for key in lost:
            self.pending.pop(key, None)  # another member owns them now; it re-reads from the last commit
        self.assigned -= lost
        log.warning("partitions lost %s: uncommitted batches will be re-delivered", sorted(lost))

    def _commit(self, offsets: dict[tuple[str, int], int]) -> bool:
        if not offsets:
            return True
        tps = [self.ck.TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            self.consumer.commit(offsets=tps, asynchronous=False)
        except self.ck.KafkaException as exc:
            self.result.commit_failures += 1
            log.warning("offset commit failed (%s); the landed batch may be re-delivered", exc)
            return False
        for (t, p), o in offsets.items():
            self.result.committed[_tp_key(t, p)] = o
            if self.pending.get((t, p)) == o:
                del self.pending[(t, p)]
        return True

    def poll_batch(self, should_stop: Callable[[], bool]) -> list:
        """Up to batch_size messages, or what arrived within batch_timeout; polls in short slices so a stop
        request is honoured within a second (what was already fetched is still landed)."""
        s = self.settings
        deadline = time.monotonic() + s.batch_timeout
        messages: list = []
        while len(messages) < s.batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            got = self.consumer.consume(
                num_messages=s.batch_size - len(messages), timeout=min(remaining, 1.0)
            )
            messages.extend(got)
            if should_stop():
                break
        return messages

    def land(self, messages: list) -> Path | None:
        good = []
        for m in messages:
            err = m.error()
            if err is None:
                good.append(m)
            elif err.code() == self.ck.KafkaError._PARTITION_EOF:
                continue
            elif err.fatal():
                raise self.ck.KafkaException(err)
            else:
                self.result.errors.append(str(err))
                log.warning("consumer error: %s", err)
        if not good:
            return None
        topics = [m.topic() for m in good]
        partitions = [m.partition() for m in good]
        offsets = [m.offset() for m in good]
        texts, bad, nulls = decode_values([m.value() for m in good])
        refs = [f"{t}/{p}/{o}" for t, p, o in zip(topics, partitions, offsets, strict=False)]
        path = land_raw_lines(self.landing_dir, texts, refs, prefix=LANDING_PREFIX)
        # Next offset to read per partition: the batch is published, so it may be committed now.
        nxt: dict[tuple[str, int], int] = {}
        for t, p, o in zip(topics, partitions, offsets, strict=False):
            if o + 1 > nxt.get((t, p), -1):
                nxt[(t, p)] = o + 1
        self.pending.update(nxt)
        self._commit(dict(self.pending))
        r = self.result
        r.batches += 1
        r.messages += len(good)
        r.non_utf8 += bad
        r.null_values += nulls
        r.files.append(str(path))
        return path

    def drained(self) -> bool:
        """True when partitions are assigned and none is behind its high watermark as the broker reports it.

        Only asked after a poll that came back empty, and `consume` wants two such polls in a row: some
        brokers report a stale high watermark, so the empty polls are the real evidence.
        """
        if not self.assigned:
            return False
        tps = [self.ck.TopicPartition(t, p) for t, p in sorted(self.assigned)]
        positions = {(tp.topic, tp.partition): tp.offset for tp in self.consumer.position(tps)}
        unknown = [tp for tp in tps if positions[(tp.topic, tp.partition)] < 0]
        if unknown:
            for tp in self.consumer.committed(unknown, timeout=10):
                positions[(tp.topic, tp.partition)] = tp.offset
        for tp in tps:
            low, high = self.consumer.get_watermark_offsets(tp, timeout=10, cached=False)
            pos = positions[(tp.topic, tp.partition)]
            if pos < 0:
                pos = low if self.settings.auto_offset_reset == "earliest" else high
            if pos < high:
                return False
        return True

    def close(self, commit: bool = True) -> None:
        try:
            if commit:
                self._commit(dict(self.pending))
            elif self.pending:
                log.warning(
                    "offsets of %d landed partition batch(es) not committed (broker unreachable); they will "
                    "be re-delivered and de-duplicated",
                    len(self.pending),
                )
        finally:
            self.consumer.close()  # leaves the group: its partitions move on at once


def consume(
    settings: KafkaSettings,
    landing_dir: str | os.PathLike,
    max_batches: int | None = None,
    stop_event: threading.Event | None = None,
    *,
    stop_when_drained: bool = False,
    max_seconds: float | None = None,
    on_batch: Callable[[ConsumeResult], None] | None = None,
) -> ConsumeResult:
    """Consume the outcome topic into the landing zone until told to stop.

    Stops when `max_batches` batches were landed, `stop_event` is set (the current batch is landed and
    committed first), `max_seconds` have passed, or, with `stop_when_drained`, after two polls in a row came back empty
    (2 x batch_timeout without a message) and no assigned partition is behind its high watermark.
    `on_batch(result)` is called after each landed and committed batch. Returns the counts.

    Raises `BrokerUnreachableError` when no broker answers within `settings.connect_timeout` seconds, at start
    or after librdkafka reported all brokers down.
    """
    stop_event = stop_event or threading.Event()
    started = time.monotonic()
    consumer = _BatchConsumer(
        settings,
        Path(landing_dir),
        should_stop=lambda: (
            stop_event.is_set() or (max_seconds is not None and time.monotonic() - started >= max_seconds)
        ),
    )
    result = consumer.result
    idle_polls = 0
    reachable = True

    def reason() -> str:
        if stop_event.is_set():
            return "stop_event"
        if max_batches is not None and result.batches >= max_batches:
            return "max_batches"
        if max_seconds is not None and time.monotonic() - started >= max_seconds:
            return "max_seconds"
        return ""

    try:
        while True:
            result.stopped_by = reason()
            if result.stopped_by:
                break
            messages = consumer.poll_batch(lambda: bool(reason()))
            landed = consumer.land(messages) if messages else None
            if landed is not None:
                idle_polls = 0
                if on_batch is not None:
                    on_batch(result)
            else:
                try:
                    consumer.check_broker()
                except BrokerUnreachableError:
                    reachable = False
                    raise
                if consumer.assigned and consumer.down_since is None:
                    idle_polls += 1
                    if stop_when_drained and idle_polls >= 2 and consumer.drained():
                        result.stopped_by = "drained"
                        break
    finally:
        consumer.close(commit=reachable)
    return result


def run_until_signalled(
    settings: KafkaSettings,
    landing_dir: str | os.PathLike,
    *,
    max_batches: int | None = None,
    report: Callable[[ConsumeResult], None] | None = None,
) -> ConsumeResult:
    """The long-running consumer: runs until SIGINT or SIGTERM, then lands and commits the batch in hand and
    leaves the consumer group. Call from the main thread."""
    import signal

    stop = threading.Event()

    def handle(signum, frame) -> None:
        log.info("signal %s: finishing the current batch", signum)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return consume(settings, landing_dir, max_batches=max_batches, stop_event=stop, on_batch=report)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
