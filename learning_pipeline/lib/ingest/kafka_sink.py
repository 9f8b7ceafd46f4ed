"""Kafka out: a sink for the outcome recorder (`write_batch(list[dict])`) that publishes JSON events
(key = event_id) with acks=all, batching, linger and compression. Whatever the broker does not acknowledge
(broker down, delivery timeout, local queue full) is written to the landing zone with `land_records`, so the
events still reach the pipeline. Needs the `kafka` extra.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from learning_pipeline.lib.ingest.kafka_io import FALLBACK_PREFIX, KafkaSettings, _kafka, _LibrdkafkaLog
from learning_pipeline.lib.storage.lake import land_records

log = logging.getLogger(__name__)


class KafkaSink:
    """A recorder sink that publishes events to the outcome topic, falling back to the landing zone.

    `write_batch(records)` produces one JSON message per record (key = event_id) and, by default, waits until
    each is acknowledged by all in-sync replicas (acks=all) or has failed: failures (broker down, delivery
    timeout, local queue full) are landed as one JSONL file in `fallback_dir`, so nothing is lost. A broker
    found down makes the following batches go straight to the landing zone for `retry_after` seconds instead
    of blocking each caller. With `synchronous=False` a batch is only queued; delivery reports (and the
    fallback) are handled on later calls, `flush()` and `close()`.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        fallback_dir: str | os.PathLike,
        *,
        synchronous: bool = True,
        flush_timeout: float | None = None,
        retry_after: float = 30.0,
    ):
        ck = _kafka()
        self.ck = ck
        self.settings = settings
        self.fallback_dir = Path(fallback_dir)
        self.synchronous = synchronous
        self.flush_timeout = (
            flush_timeout if flush_timeout is not None else settings.delivery_timeout_ms / 1000 + 5
        )
        self.retry_after = retry_after
        self._brokers_down = threading.Event()
        self._down_until = 0.0
        self._failed: list[dict] = []
        self._lock = threading.Lock()
        self.delivered = 0
        self.fallback_records = 0
        self.fallback_files: list[str] = []
        config = settings.producer_config()
        config["error_cb"] = self._on_error
        self.producer = ck.Producer(config, logger=_LibrdkafkaLog(log))

    def _on_error(self, err) -> None:
        if err.code() == self.ck.KafkaError._ALL_BROKERS_DOWN:
            self._brokers_down.set()
        if err.code() != self.ck.KafkaError._TRANSPORT:  # one per reconnect attempt; the fallback is logged
            log.warning("kafka producer: %s", err)

    def _report(self, err, msg) -> None:
        if err is None:
            self.delivered += 1
            self._brokers_down.clear()
        else:
            with self._lock:
                self._failed.append(json.loads(msg.value()))

    def _land_failed(self) -> None:
        with self._lock:
            failed, self._failed = self._failed, []
        if failed:
            path = land_records(self.fallback_dir, failed, prefix=FALLBACK_PREFIX)
            self.fallback_records += len(failed)
            self.fallback_files.append(str(path))
            log.warning("kafka delivery failed for %d events; landed them in %s", len(failed), path)

    def write_batch(self, records: list[dict]) -> None:
        if not records:
            return
        if time.monotonic() < self._down_until:
            with self._lock:
                self._failed.extend(records)
            self._land_failed()
            return
        self._brokers_down.clear()  # try the broker again; a failed connection sets it anew
        topic = self.settings.topic
        for record in records:
            key = record.get("event_id")
            value = json.dumps(record, default=str, separators=(",", ":")).encode("utf-8")
            try:
                self.producer.produce(
                    topic, value=value, key=None if key is None else str(key), on_delivery=self._report
                )
            except BufferError:
                self.producer.poll(0.5)  # local queue full: serve delivery reports, then try once more
                try:
                    self.producer.produce(
                        topic, value=value, key=None if key is None else str(key), on_delivery=self._report
                    )
                except (BufferError, self.ck.KafkaException):
                    with self._lock:
                        self._failed.append(record)
            except self.ck.KafkaException:
                with self._lock:
                    self._failed.append(record)
        if self.synchronous:
            self.flush()
        else:
            self.producer.poll(0)
            self._land_failed()

    def flush(self, timeout: float | None = None) -> None:
        """Wait for every queued event to be acknowledged or failed; land the failures. Gives up early (and
        lands what is left) when all brokers are down."""
        deadline = time.monotonic() + (self.flush_timeout if timeout is None else timeout)
        while len(self.producer) > 0:
            self.producer.flush(0.2)
            if self._brokers_down.is_set() or time.monotonic() >= deadline:
                if len(self.producer) > 0:
                    # Undelivered messages get a failed delivery report, which lands them locally; one
                    # already sent may also arrive at the broker: de-duplication by event_id absorbs that.
                    self.producer.purge(in_queue=True, in_flight=True, blocking=True)
                    self.producer.poll(0)
                    self._down_until = time.monotonic() + self.retry_after
                break
        self._land_failed()

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> KafkaSink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
