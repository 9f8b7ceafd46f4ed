"""The Kafka ingest sensor: each tick drains the outcome topic into the landing zone, batch by batch.

It only lands files (and commits their offsets); the landing-zone sensor stages them and requests the runs.
Stopped by default: turn it on when the pipeline should read Kafka, or run `learning-pipeline consume`
instead for a continuous, lower-latency consumer (not both on the same consumer group).
A tick that reaches no broker within `connect_timeout_seconds` (KAFKA_CONNECT_TIMEOUT_SECONDS, 30) fails with
one `BrokerUnreachableError` naming the servers and librdkafka's last error.
"""

from __future__ import annotations

import json

import dagster as dg

from learning_pipeline.defs.ingest.resources import KafkaResource
from learning_pipeline.defs.resources import LakeResource
from learning_pipeline.lib.ingest.kafka_io import consume


@dg.sensor(
    name="kafka_ingest_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Drains the Kafka outcome topic into the landing zone (up to max_batches_per_tick batches per tick).",
)
def kafka_ingest_sensor(context: dg.SensorEvaluationContext, kafka: KafkaResource, lake: LakeResource):
    """The cursor keeps running totals; the offsets themselves are committed to Kafka after each landed batch."""
    totals = json.loads(context.cursor) if context.cursor else {"messages": 0, "batches": 0, "non_utf8": 0}
    result = consume(
        kafka.settings(),
        lake.paths.landing,
        max_batches=kafka.max_batches_per_tick,
        stop_when_drained=True,
        max_seconds=kafka.max_seconds_per_tick,
    )
    for key in ("messages", "batches", "non_utf8"):
        totals[key] = totals.get(key, 0) + getattr(result, key)
    summary = result.as_dict()
    context.log.info(f"kafka ingest tick: {summary}")
    for error in result.errors[:5]:
        context.log.warning(f"kafka consumer error: {error}")
    if result.messages:
        reason = (
            f"landed {result.messages} message(s) in {result.batches} file(s) "
            f"({result.non_utf8} not UTF-8, {len(result.errors)} consumer error(s)); stopped by {result.stopped_by}"
        )
    else:
        reason = f"no new messages on {kafka.topic} (stopped by {result.stopped_by})"
    return dg.SensorResult(skip_reason=reason, cursor=json.dumps(totals))
