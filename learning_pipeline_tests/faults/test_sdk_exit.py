"""The SDK recorder in programs that end without close(): real Python processes, events counted in the landing zone.

Each test runs a small program that records events with a long linger (nothing would be written on its own
before the program ends), then ends it one way: falling off the end of the script, SIGTERM with and without a
handler of the program's own, SIGKILL (which no process can catch: documents what it loses).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PRELUDE = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    from learning_pipeline.lib.ingest.recorder import OutcomeRecorder

    landing = sys.argv[1]

    def record(recorder, n, prefix="ev"):
        for i in range(n):
            recorder.record({"event_id": f"{prefix}-{i}", "agent_name": "a", "status": "success"})

    def lingering(n=0, prefix="ev"):
        # a recorder that writes nothing on its own before the program ends, holding n recorded events
        recorder = OutcomeRecorder(landing_dir=landing, batch_size=10_000, linger_seconds=3600)
        record(recorder, n, prefix)
        return recorder
    """
)


def _program(body: str) -> str:
    return PRELUDE + textwrap.dedent(body)


def _start(tmp_path: Path, body: str) -> tuple[subprocess.Popen, Path]:
    landing = tmp_path / "landing"
    proc = subprocess.Popen(
        [sys.executable, "-c", _program(body), str(landing)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, landing


def _finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _wait_for_line(proc: subprocess.Popen, expected: str, timeout: float = 60) -> None:
    """Read the program's stdout until it prints `expected` (it prints once its events are recorded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == expected:
            return
        if not line and proc.poll() is not None:
            raise AssertionError(
                f"program ended ({proc.returncode}) before '{expected}': {proc.stderr.read()}"
            )
    raise AssertionError(f"program did not print '{expected}' within {timeout} s")


def _landed(landing: Path) -> list[str]:
    ids: list[str] = []
    for path in sorted(landing.glob("*.jsonl")):
        ids += [json.loads(line)["event_id"] for line in path.read_text().splitlines() if line.strip()]
    return ids


def _debris(landing: Path) -> list[str]:
    return sorted(p.name for p in landing.glob(".*")) if landing.exists() else []


def test_program_that_ends_without_close_flushes_at_exit(tmp_path):
    proc, landing = _start(
        tmp_path,
        """
        recorder = lingering(250)
        print("recorded", flush=True)
        # no close(): the script just ends
        """,
    )
    _, stderr = _finish(proc)
    assert proc.returncode == 0, stderr
    assert sorted(_landed(landing)) == sorted(f"ev-{i}" for i in range(250))
    assert _debris(landing) == []


def test_program_ending_with_an_uncaught_exception_still_flushes(tmp_path):
    proc, landing = _start(
        tmp_path,
        """
        recorder = lingering(120)
        raise RuntimeError("the agent crashed")
        """,
    )
    _, stderr = _finish(proc)
    assert proc.returncode == 1 and "the agent crashed" in stderr
    assert len(set(_landed(landing))) == 120


def test_recorder_created_in_a_worker_thread_flushes_at_exit(tmp_path):
    proc, landing = _start(
        tmp_path,
        """
        def work():
            recorder = lingering(80)

        t = threading.Thread(target=work)
        t.start()
        t.join()
        """,
    )
    _, stderr = _finish(proc)
    assert proc.returncode == 0, stderr
    assert len(set(_landed(landing))) == 80


def test_sigterm_flushes_then_ends_the_process_as_killed_by_sigterm(tmp_path):
    proc, landing = _start(
        tmp_path,
        """
        recorder = lingering(300)
        print("recorded", flush=True)
        time.sleep(120)
        """,
    )
    _wait_for_line(proc, "recorded")
    assert _landed(landing) == []  # still buffered
    proc.send_signal(signal.SIGTERM)
    _, stderr = _finish(proc)
    assert proc.returncode == -signal.SIGTERM, stderr  # the default action still ends it
    assert sorted(_landed(landing)) == sorted(f"ev-{i}" for i in range(300))
    assert _debris(landing) == []


def test_sigterm_while_the_main_thread_records_and_more_than_one_recorder(tmp_path):
    """The handler runs on the main thread wherever it is, e.g. inside record(); every open recorder is
    flushed, and each event the program was told was recorded lands."""
    proc, landing = _start(
        tmp_path,
        """
        first = lingering()
        second = lingering(40, prefix="second")
        count = 0
        # One fixed-width pwrite per event: a signal handler never sees a half-written count.
        fd = os.open(os.path.join(os.path.dirname(landing), "count"), os.O_CREAT | os.O_WRONLY)
        print("recording", flush=True)
        while True:
            first.record({"event_id": f"first-{count}", "agent_name": "a", "status": "success"})
            count += 1  # only counted once record() returned
            os.pwrite(fd, b"%012d" % count, 0)
        """,
    )
    _wait_for_line(proc, "recording")
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, stderr = _finish(proc)
    assert proc.returncode == -signal.SIGTERM, stderr
    landed = _landed(landing)
    acknowledged = int((tmp_path / "count").read_text())
    first = {e for e in landed if e.startswith("first-")}
    assert {f"first-{i}" for i in range(acknowledged)} <= first  # every acknowledged event
    assert len(first) <= acknowledged + 1  # plus at most the one interrupted mid-record()
    assert len(landed) == len(set(landed))
    assert {e for e in landed if e.startswith("second-")} == {f"second-{i}" for i in range(40)}


def test_program_with_its_own_sigterm_handler_keeps_it_and_exit_flushes(tmp_path):
    proc, landing = _start(
        tmp_path,
        """
        calls = []

        def mine(signum, frame):
            calls.append(signum)
            print("my handler ran", flush=True)
            sys.exit(3)

        signal.signal(signal.SIGTERM, mine)
        recorder = lingering()
        assert signal.getsignal(signal.SIGTERM) is mine  # not replaced
        record(recorder, 200)
        print("recorded", flush=True)
        time.sleep(120)
        """,
    )
    _wait_for_line(proc, "recorded")
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = _finish(proc)
    assert proc.returncode == 3, stderr
    assert "my handler ran" in stdout
    assert len(set(_landed(landing))) == 200


def test_handler_is_removed_when_the_last_recorder_closes(tmp_path):
    proc, _ = _start(
        tmp_path,
        """
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        a = OutcomeRecorder(landing_dir=landing)
        b = OutcomeRecorder(landing_dir=landing)
        installed = signal.getsignal(signal.SIGTERM)
        assert installed != signal.SIG_DFL
        a.close()
        assert signal.getsignal(signal.SIGTERM) is installed
        b.close()
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        off = OutcomeRecorder(landing_dir=landing, flush_on_exit=False)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        off.close()
        print("ok", flush=True)
        """,
    )
    stdout, stderr = _finish(proc)
    assert proc.returncode == 0 and stdout.strip() == "ok", stderr


def test_events_that_cannot_be_written_at_exit_are_reported_not_dropped_silently(tmp_path):
    proc, landing = _start(
        tmp_path,
        """
        class BrokenSink:
            def write_batch(self, events):
                raise OSError("disk unavailable")

        recorder = OutcomeRecorder(
            BrokenSink(), batch_size=10_000, linger_seconds=3600, max_retries=1,
            retry_backoff_seconds=0.01, max_backoff_seconds=0.05, exit_timeout=5,
        )
        record(recorder, 70)
        """,
    )
    _, stderr = _finish(proc)
    assert proc.returncode == 0
    assert "70 events could not be written" in stderr and "disk unavailable" in stderr, stderr
    assert "lost" in stderr


def test_sigkill_loses_only_what_was_not_yet_written(tmp_path):
    """What the README promises for SIGKILL: events written before (here by flush()) are safe; the buffer,
    recorded but not yet written, is lost; no partial file is published."""
    proc, landing = _start(
        tmp_path,
        """
        recorder = lingering(100, prefix="flushed")
        recorder.flush()
        record(recorder, 50, prefix="buffered")
        print("recorded", flush=True)
        time.sleep(120)
        """,
    )
    _wait_for_line(proc, "recorded")
    proc.send_signal(signal.SIGKILL)
    _finish(proc)
    assert proc.returncode == -signal.SIGKILL
    assert sorted(_landed(landing)) == sorted(f"flushed-{i}" for i in range(100))


@pytest.mark.skipif(os.name != "posix", reason="signals")
def test_sigterm_before_anything_was_recorded_ends_the_process_normally(tmp_path):
    proc, landing = _start(
        tmp_path,
        """
        recorder = OutcomeRecorder(landing_dir=landing)
        print("ready", flush=True)
        time.sleep(120)
        """,
    )
    _wait_for_line(proc, "ready")
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _finish(proc)
    assert proc.returncode == -signal.SIGTERM
    assert time.monotonic() - started < 10
    assert _landed(landing) == [] if landing.exists() else True
