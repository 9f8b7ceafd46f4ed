"""The Kafka resource: where the outcome topic is and how much a sensor tick may drain."""

from __future__ import annotations

import json
import os

import dagster as dg

from learning_pipeline.lib.ingest.kafka_io import ENV_EXTRA_CONFIG, ENV_VARS, KafkaSettings

ENV_MAX_BATCHES_PER_TICK = "KAFKA_SENSOR_MAX_BATCHES"
ENV_MAX_SECONDS_PER_TICK = "KAFKA_SENSOR_MAX_SECONDS"

_DEFAULTS = KafkaSettings()
# KafkaResource fields named otherwise than the KafkaSettings field they set
_SETTINGS_NAMES = {"batch_timeout_seconds": "batch_timeout", "connect_timeout_seconds": "connect_timeout"}
# KafkaResource fields that are not KafkaSettings fields, with their environment variables
_OWN_ENV_VARS = {
    "extra_config_json": ENV_EXTRA_CONFIG,
    "max_batches_per_tick": ENV_MAX_BATCHES_PER_TICK,
    "max_seconds_per_tick": ENV_MAX_SECONDS_PER_TICK,
}


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
        values = {
            _SETTINGS_NAMES.get(name, name): getattr(self, name)
            for name in type(self).model_fields
            if name not in _OWN_ENV_VARS
        }
        return KafkaSettings(**values, extra_config=extra)


def _env_var(field_name: str) -> str:
    return _OWN_ENV_VARS.get(field_name) or ENV_VARS[_SETTINGS_NAMES.get(field_name, field_name)]


def default_kafka_resource() -> KafkaResource:
    """A KafkaResource reading each setting from its environment variable when that is set."""
    values: dict = {}
    for name, field in KafkaResource.model_fields.items():
        var = _env_var(name)
        if not os.environ.get(var):
            continue
        if field.annotation is str:
            values[name] = dg.EnvVar(var)
        elif field.annotation is int:
            values[name] = dg.EnvVar.int(var)
        else:  # seconds may be fractional; Dagster has no float EnvVar, so these are read when definitions load
            values[name] = float(os.environ[var])
    return KafkaResource(**values)
