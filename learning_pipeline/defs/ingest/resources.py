"""The Kafka resource: where the outcome topic is and how much a sensor tick may drain."""

from __future__ import annotations

import json
import os

import dagster as dg

from learning_pipeline.lib.ingest.kafka_io import (
    ENV_BATCH_SIZE,
    ENV_BATCH_TIMEOUT,
    ENV_BOOTSTRAP,
    ENV_CONNECT_TIMEOUT,
    ENV_EXTRA_CONFIG,
    ENV_GROUP,
    ENV_OFFSET_RESET,
    ENV_SESSION_TIMEOUT,
    ENV_TOPIC,
    KafkaSettings,
)

ENV_MAX_BATCHES_PER_TICK = "KAFKA_SENSOR_MAX_BATCHES"
ENV_MAX_SECONDS_PER_TICK = "KAFKA_SENSOR_MAX_SECONDS"

_DEFAULTS = KafkaSettings()


class KafkaResource(dg.ConfigurableResource):
    """Connection and batching settings of the Kafka consumer (see `learning_pipeline.lib.ingest.kafka_io`)."""

    bootstrap_servers: str = _DEFAULTS.bootstrap_servers
    topic: str = _DEFAULTS.topic
    group_id: str = _DEFAULTS.group_id
    batch_size: int = _DEFAULTS.batch_size
    batch_timeout_seconds: float = _DEFAULTS.batch_timeout
    session_timeout_ms: int = _DEFAULTS.session_timeout_ms
    auto_offset_reset: str = _DEFAULTS.auto_offset_reset
    extra_config_json: str = ""
    # A tick gives up with a clear error when no broker answers within this many seconds.
    connect_timeout_seconds: float = _DEFAULTS.connect_timeout
    max_batches_per_tick: int = 20
    max_seconds_per_tick: float = 40.0

    def settings(self) -> KafkaSettings:
        extra = json.loads(self.extra_config_json) if self.extra_config_json.strip() else {}
        if not isinstance(extra, dict):
            raise ValueError("extra_config_json must be a JSON object of librdkafka properties")
        return KafkaSettings(
            bootstrap_servers=self.bootstrap_servers,
            topic=self.topic,
            group_id=self.group_id,
            batch_size=self.batch_size,
            batch_timeout=self.batch_timeout_seconds,
            session_timeout_ms=self.session_timeout_ms,
            auto_offset_reset=self.auto_offset_reset,
            connect_timeout=self.connect_timeout_seconds,
            extra_config=extra,
        )


def default_kafka_resource() -> KafkaResource:
    """A KafkaResource reading each setting from its environment variable when that is set."""
    env = os.environ
    values: dict = {}
    for field_name, var in (
        ("bootstrap_servers", ENV_BOOTSTRAP),
        ("topic", ENV_TOPIC),
        ("group_id", ENV_GROUP),
        ("auto_offset_reset", ENV_OFFSET_RESET),
        ("extra_config_json", ENV_EXTRA_CONFIG),
    ):
        if env.get(var):
            values[field_name] = dg.EnvVar(var)
    for field_name, var in (
        ("batch_size", ENV_BATCH_SIZE),
        ("session_timeout_ms", ENV_SESSION_TIMEOUT),
        ("max_batches_per_tick", ENV_MAX_BATCHES_PER_TICK),
    ):
        if env.get(var):
            values[field_name] = dg.EnvVar.int(var)
    # Seconds may be fractional; Dagster has no float EnvVar, so these are read when definitions load.
    for field_name, var in (
        ("batch_timeout_seconds", ENV_BATCH_TIMEOUT),
        ("max_seconds_per_tick", ENV_MAX_SECONDS_PER_TICK),
        ("connect_timeout_seconds", ENV_CONNECT_TIMEOUT),
    ):
        if env.get(var):
            values[field_name] = float(env[var])
    return KafkaResource(**values)
