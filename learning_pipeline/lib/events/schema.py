"""The outcome event: one definition of its fields, types and rules.

Every way in (SDK, file drops, Kafka) lands raw records; validation
(`learning_pipeline.lib.events.validation`) turns them into rows of `OUTCOME_EVENT_SCHEMA`
or quarantine rows with a reason. The field list is the union of the seeds'
OutcomeEvent (realtime feedback pipeline) and the online-learning event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

FieldKind = Literal["string", "timestamp", "double", "integer", "json", "object", "string_list"]

STATUSES = ("success", "failure", "partial", "timeout")
SEVERITIES = ("info", "warning", "error", "critical")


@dataclass(frozen=True)
class EventField:
    name: str
    kind: FieldKind
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    description: str = ""


EVENT_FIELDS: tuple[EventField, ...] = (
    EventField(
        "event_id", "string", required=True, description="unique id; duplicates are dropped and counted"
    ),
    EventField("run_id", "string"),
    EventField("agent_name", "string", required=True),
    EventField("agent_type", "string"),
    EventField("action_type", "string"),
    EventField(
        "task_type", "string", description="task class used for routing; stats fall back to action_type"
    ),
    EventField(
        "timestamp", "timestamp", required=True, description="event time (ISO-8601); decides the partition"
    ),
    EventField("start_time", "timestamp"),
    EventField("end_time", "timestamp"),
    EventField("duration_ms", "double", minimum=0),
    EventField("latency_ms", "double", minimum=0),
    EventField("status", "string", required=True, description="success/failure/partial/timeout, any case"),
    EventField("severity", "string", description="info/warning/error/critical, any case"),
    EventField("llm_latency_ms", "double", minimum=0),
    EventField("tokens_used", "integer", minimum=0),
    EventField("cost_usd", "double", minimum=0),
    EventField("quality_score", "double", minimum=0, maximum=1),
    EventField("input", "json", description="any JSON value, kept as JSON text"),
    EventField("output", "json", description="any JSON value, kept as JSON text"),
    EventField("error_message", "string"),
    EventField("error_type", "string"),
    EventField("stack_trace", "string"),
    EventField("retry_count", "integer", minimum=0),
    EventField("correlation_id", "string"),
    EventField("workflow_id", "string"),
    EventField("tags", "string_list"),
    EventField("context", "object", description="JSON object, e.g. {complexity, domain}; kept as JSON text"),
    EventField("metadata", "object", description="JSON object, e.g. {model, provider}; kept as JSON text"),
    EventField(
        "selection_propensity",
        "double",
        minimum=0,
        maximum=1,
        exclusive_minimum=True,
        description="probability with which the router chose this agent",
    ),
    EventField("candidate_agents", "string_list", description="agents the router could have chosen"),
    EventField(
        "decision_id",
        "string",
        description="id of the served decision this outcome follows (its propensity comes from the decision log)",
    ),
)

FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in EVENT_FIELDS)
REQUIRED_FIELDS: tuple[str, ...] = tuple(f.name for f in EVENT_FIELDS if f.required)
FIELDS_BY_NAME: dict[str, EventField] = {f.name: f for f in EVENT_FIELDS}

_ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "double": pa.float64(),
    "integer": pa.int64(),
    "json": pa.string(),
    "object": pa.string(),
    "string_list": pa.list_(pa.string()),
}

# DuckDB types of the validated columns; JSON-valued fields are stored as JSON text.
DUCKDB_TYPES: dict[str, str] = {
    "string": "VARCHAR",
    "timestamp": "TIMESTAMPTZ",
    "double": "DOUBLE",
    "integer": "BIGINT",
    "json": "VARCHAR",
    "object": "VARCHAR",
    "string_list": "VARCHAR[]",
}

# Columns the pipeline adds to every accepted event.
LINEAGE_FIELDS: tuple[pa.Field, ...] = (
    pa.field("source_file", pa.string(), nullable=False),
    pa.field("record_number", pa.int64(), nullable=False),
    pa.field("received_at", pa.timestamp("us", tz="UTC"), nullable=False),
)

OUTCOME_EVENT_SCHEMA = pa.schema(
    [pa.field(f.name, _ARROW_TYPES[f.kind], nullable=not f.required) for f in EVENT_FIELDS]
    + list(LINEAGE_FIELDS)
)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("record_number", pa.int64(), nullable=False),
        pa.field("source_ref", pa.string()),
        pa.field("received_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("details", pa.string(), nullable=False),
        pa.field("event_id", pa.string()),
        pa.field("raw_record", pa.string()),
    ]
)

# Reasons a record is quarantined (the `reason` column holds the first that applies).
REJECT_REASONS = (
    "oversized_payload",
    "malformed_json",
    "missing_required_field",
    "wrong_type",
    "out_of_range",
    "unknown_status",
    "unknown_severity",
    "future_timestamp",
    "before_first_partition",
    "unreadable_file",
)
