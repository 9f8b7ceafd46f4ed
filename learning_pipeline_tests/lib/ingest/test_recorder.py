import json
import threading
import time
from collections import Counter

import pytest

from learning_pipeline.lib.ingest.recorder import (
    BufferFullError,
    LandingZoneSink,
    OutcomeRecorder,
    RecorderClosedError,
    RecorderError,
)
from learning_pipeline.lib.simulation.simulate import SEED_EXAMPLE_EVENTS


def _landed(landing):
    events = []
    for path in sorted(landing.glob("*.jsonl")):
        events += [json.loads(line) for line in path.read_text().splitlines()]
    return events


def _wait_until(predicate, deadline_seconds=30.0):
    end = time.monotonic() + deadline_seconds
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


class BlockingSink:
    def __init__(self, inner):
        self.inner, self.release = inner, threading.Event()

    def write_batch(self, events):
        self.release.wait()
        self.inner.write_batch(events)


class FlakySink:
    def __init__(self, inner, failures):
        self.inner, self.failures, self.calls = inner, failures, 0

    def write_batch(self, events):
        self.calls += 1
        if self.calls <= self.failures:
            raise OSError("disk unavailable")
        self.inner.write_batch(events)


def test_many_threads_every_event_lands_exactly_once(tmp_path):
    recorder = OutcomeRecorder(landing_dir=tmp_path, batch_size=50, linger_seconds=0.05)

    def work(thread_no):
        for i in range(300):
            recorder.record({"agent_name": f"agent_{thread_no}", "status": "success", "seq": i})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    recorder.close()
    events = _landed(tmp_path)
    assert len(events) == 2400
    assert len({e["event_id"] for e in events}) == 2400
    assert Counter((e["agent_name"], e["seq"]) for e in events) == Counter(
        {(f"agent_{n}", i): 1 for n in range(8) for i in range(300)}
    )
    stats = recorder.stats
    assert (stats.recorded, stats.written, stats.write_errors, stats.pending) == (2400, 2400, 0, 0)
    assert stats.batches == len(list(tmp_path.glob("*.jsonl"))) >= 2400 // 50
    assert not list(tmp_path.glob(".*"))  # no temp files left behind


def test_fills_event_id_and_timestamp(tmp_path):
    with OutcomeRecorder(landing_dir=tmp_path) as recorder:
        event_id = recorder.record({"agent_name": "react_agent", "status": "success"})
        kept = recorder.record(dict(SEED_EXAMPLE_EVENTS[0]))
    events = {e["event_id"]: e for e in _landed(tmp_path)}
    assert events[event_id]["timestamp"].endswith("Z")
    assert kept == SEED_EXAMPLE_EVENTS[0]["event_id"]
    assert events[kept] == SEED_EXAMPLE_EVENTS[0]


def test_linger_flushes_a_small_batch(tmp_path):
    recorder = OutcomeRecorder(landing_dir=tmp_path, batch_size=1000, linger_seconds=0.05)
    try:
        for i in range(3):
            recorder.record({"agent_name": "a", "status": "success", "seq": i})
        assert _wait_until(lambda: recorder.written == 3)
        assert len(_landed(tmp_path)) == 3 and recorder.batches == 1
    finally:
        recorder.close()


def test_close_flushes_everything_and_is_idempotent(tmp_path):
    recorder = OutcomeRecorder(landing_dir=tmp_path, batch_size=1000, linger_seconds=3600)
    for i in range(7):
        recorder.record({"agent_name": "a", "status": "failure", "seq": i})
    recorder.close()
    recorder.close()
    assert sorted(e["seq"] for e in _landed(tmp_path)) == list(range(7))
    with pytest.raises(RecorderClosedError):
        recorder.record({"agent_name": "a", "status": "success"})


def test_full_buffer_raises_instead_of_dropping(tmp_path):
    sink = BlockingSink(LandingZoneSink(tmp_path))
    recorder = OutcomeRecorder(sink, batch_size=5, linger_seconds=0.01, max_buffer=10)
    accepted = 0
    with pytest.raises(BufferFullError, match="buffer full"):
        for i in range(100):
            recorder.record({"agent_name": "a", "status": "success", "seq": i})
            accepted += 1
    assert accepted == 10
    sink.release.set()
    recorder.close()
    assert sorted(e["seq"] for e in _landed(tmp_path)) == list(range(10))


def test_transient_write_failure_is_retried(tmp_path):
    sink = FlakySink(LandingZoneSink(tmp_path), failures=2)
    recorder = OutcomeRecorder(sink, batch_size=4, linger_seconds=0.01, retry_backoff_seconds=0.01)
    for i in range(4):
        recorder.record({"agent_name": "a", "status": "success", "seq": i})
    recorder.close()
    assert sorted(e["seq"] for e in _landed(tmp_path)) == [0, 1, 2, 3]
    stats = recorder.stats
    assert stats.write_errors == 2 and stats.written == 4 and stats.batches == 1
    assert "disk unavailable" in stats.last_error


def test_close_raises_when_events_cannot_be_written(tmp_path):
    sink = FlakySink(LandingZoneSink(tmp_path), failures=10**9)
    recorder = OutcomeRecorder(
        sink,
        batch_size=2,
        linger_seconds=0.01,
        max_retries=2,
        retry_backoff_seconds=0.001,
        max_backoff_seconds=0.01,
    )
    recorder.record({"agent_name": "a", "status": "success"})
    recorder.record({"agent_name": "a", "status": "success"})
    with pytest.raises(RecorderError, match="2 events could not be written"):
        recorder.close()
    assert recorder.stats.pending == 2 and recorder.written == 0 and recorder.write_errors >= 3
    assert not _landed(tmp_path)


def test_rejects_non_dict_events(tmp_path):
    with OutcomeRecorder(landing_dir=tmp_path) as recorder:
        with pytest.raises(TypeError):
            recorder.record("not an event")
