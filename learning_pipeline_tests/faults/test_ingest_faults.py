"""Ingestion under faults (issue 11, items 1, 3, 4, 5 and 8), through the public interfaces.

Poison landing files, two runs of one day publishing out of order (real processes, SIGSTOP/SIGCONT), debris
of writers killed with SIGKILL, fsync ordering on every publish path, and re-deliveries dated on another day.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from learning_pipeline.defs.events.assets import outcome_events
from learning_pipeline.defs.events.sensors import landing_zone_sensor
from learning_pipeline.defs.resources import LakeResource
from learning_pipeline.lib.autonomy.alerts import AlertStore
from learning_pipeline.lib.events.staging import read_log, stage_pending
from learning_pipeline.lib.storage.lake import land_records

DAY = "2025-10-09"


def event(event_id: str, timestamp: str = f"{DAY}T10:00:00Z", **fields) -> dict:
    return {"event_id": event_id, "agent_name": "a", "status": "success", "timestamp": timestamp, **fields}


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def materialize(lake: LakeResource, day: str) -> dict:
    result = dg.materialize([outcome_events], partition_key=day, resources={"lake": lake})
    assert result.success
    [mat] = [
        m
        for m in result.asset_materializations_for_node("outcome_events")
        if m.asset_key.path == ["outcome_events"]
    ]
    meta = {key: value.value for key, value in mat.metadata.items()}
    assert meta["received"] == meta["accepted"] + meta["quarantined"] + meta["duplicates"]
    return meta


def rows(lake: LakeResource, table: str, day: str) -> list[dict]:
    return pq.read_table(lake.paths.partition_dir(table, day) / "data.parquet").to_pylist()


def _parquet_bytes(records: list[dict]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records), sink)
    return sink.getvalue()


GOOD_LINE = (json.dumps(event("x")) + "\n").encode()
POISON = {
    "random.parquet": os.urandom(4096),
    "truncated.parquet": _parquet_bytes([event(f"p{i}") for i in range(200)])[:-40],
    "truncated.jsonl.gz": gzip.compress(GOOD_LINE * 2000)[:200],
    "plain_text.jsonl.gz": GOOD_LINE * 3,
}
# A fragment of the error text each poison file is quarantined with.
POISON_ERRORS = {
    "random.parquet": "Parquet magic bytes not found",
    "truncated.parquet": "Parquet magic bytes not found",
    "truncated.jsonl.gz": "Compressed file ended before the end-of-stream marker",
    "plain_text.jsonl.gz": "not a gzip stream",
}


# ---- 1. poison landing files -----------------------------------------------------------------------------


def test_poison_files_are_set_aside_quarantined_and_alerted_while_the_rest_goes_on(lake):
    for name, data in POISON.items():
        (lake.paths.landing / name).write_bytes(data)
    land_records(lake.paths.landing, [event("good-1"), event("good-2")])

    day = materialize(lake, DAY)
    arrival = materialize(lake, today())

    assert sorted(r["event_id"] for r in rows(lake, "outcome_events", DAY)) == ["good-1", "good-2"]
    assert day["accepted"] == 2
    unreadable = {r["source_file"]: r for r in rows(lake, "quarantined_events", today())}
    assert set(unreadable) == set(POISON)
    assert arrival["quarantined"] == len(POISON)
    for name, data in POISON.items():
        row = unreadable[name]
        assert row["reason"] == "unreadable_file" and row["record_number"] == 0
        assert row["details"].startswith("unreadable_file: ") and POISON_ERRORS[name] in row["details"]
        assert f"set aside as landing/.unreadable/{name}" in row["details"]
        # set aside whole, never deleted, and no longer a landing file
        assert (lake.paths.unreadable / name).read_bytes() == data
        assert not (lake.paths.landing / name).exists()
    alerts = AlertStore(lake.paths).list()
    titles = set(alerts[alerts["alert_type"] == "ERROR"]["title"])
    assert titles == {f"unreadable landing file {name}" for name in POISON}

    # later runs and files go on; a set-aside file is never staged again
    land_records(lake.paths.landing, [event("good-3")])
    assert materialize(lake, DAY)["accepted"] == 3
    assert sum(1 for entry in read_log(lake.paths) if entry.error) == len(POISON)


def test_a_repeated_top_level_key_rejects_only_that_record(lake):
    lines = [
        json.dumps(event("before")),
        '{"event_id": "a", "event_id": "b", "agent_name": "a", "status": "success", '
        f'"timestamp": "{DAY}T11:00:00Z"}}',
        json.dumps(event("after", context={"k": 1})),
    ]
    (lake.paths.landing / "dup_keys.jsonl").write_text("\n".join(lines) + "\n")

    materialize(lake, DAY)
    arrival = materialize(lake, today())

    assert sorted(r["event_id"] for r in rows(lake, "outcome_events", DAY)) == ["after", "before"]
    [bad] = rows(lake, "quarantined_events", today())
    assert (bad["reason"], bad["record_number"]) == ("malformed_json", 2)
    assert 'repeated key "event_id"' in bad["details"]
    assert arrival["quarantined"] == 1


def test_a_landing_sensor_tick_goes_past_a_poison_file(lake):
    (lake.paths.landing / "random.parquet").write_bytes(POISON["random.parquet"])
    land_records(lake.paths.landing, [event("s1")])
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources={"lake": lake})
        result = landing_zone_sensor(context)
        assert sorted(r.partition_key for r in result.run_requests) == sorted({DAY, today()})
        again = landing_zone_sensor(
            dg.build_sensor_context(instance=instance, cursor=result.cursor, resources={"lake": lake})
        )
        assert isinstance(again, dg.SkipReason)


# ---- 3. an older run publishing last ----------------------------------------------------------------------

MATERIALIZE_SCRIPT = textwrap.dedent(
    """
    import sys
    import dagster as dg
    from learning_pipeline.defs.events.assets import outcome_events
    from learning_pipeline.defs.resources import LakeResource

    result = dg.materialize(
        [outcome_events], partition_key=sys.argv[2], resources={"lake": LakeResource(data_dir=sys.argv[1])}
    )
    sys.exit(0 if result.success else 1)
    """
)


def _start_run(data_dir: str, day: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", MATERIALIZE_SCRIPT, data_dir, day],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_an_older_run_that_publishes_last_does_not_lose_newer_events(lake):
    """Run A reads the staging log, then stalls (SIGSTOP) while writing its partition; run B, started after
    500 more events landed, publishes; A resumes and finishes last. No pool serializes them."""
    old_events = 150_000
    land_records(
        lake.paths.landing,
        [event(f"old-{i}", f"{DAY}T{i % 24:02d}:00:00Z", latency_ms=float(i)) for i in range(old_events)],
    )
    stage_pending(lake.paths, lake.staging_rules())
    partition = lake.paths.partition_dir("outcome_events", DAY)

    run_a = _start_run(lake.data_dir, DAY)
    try:
        deadline = time.monotonic() + 120
        while not (partition.exists() and any(p.name.endswith(".tmp") for p in os.scandir(partition))):
            assert run_a.poll() is None and time.monotonic() < deadline, "run A ended before writing"
            time.sleep(0.0005)
        os.kill(run_a.pid, signal.SIGSTOP)
        assert not (partition / "data.parquet").exists(), "run A published before it could be stopped"

        land_records(lake.paths.landing, [event(f"new-{i}", f"{DAY}T23:00:00Z") for i in range(500)])
        run_b = _start_run(lake.data_dir, DAY)
        _, err = run_b.communicate(timeout=180)
        assert run_b.returncode == 0, err.decode()[-3000:]
        assert pq.read_metadata(partition / "data.parquet").num_rows == old_events + 500
    finally:
        os.kill(run_a.pid, signal.SIGCONT)
    _, err = run_a.communicate(timeout=180)
    assert run_a.returncode == 0, err.decode()[-3000:]

    table = pq.read_table(partition / "data.parquet", columns=["event_id"])
    assert table.num_rows == old_events + 500
    assert sum(1 for i in table.column("event_id").to_pylist() if i.startswith("new-")) == 500


def test_a_rebuilt_staging_log_still_publishes(lake):
    """Sequence numbers are compared only within one staging log: after staging is rebuilt (here without a
    landing file someone removed), the lower sequence numbers of the new log still publish."""
    for i in range(3):
        land_records(lake.paths.landing, [event(f"r{i}")])
    assert materialize(lake, DAY)["accepted"] == 3
    removed = sorted(lake.paths.landing.glob("*.jsonl"))[0]
    removed.unlink()
    shutil.rmtree(lake.paths.staging)

    meta = materialize(lake, DAY)
    assert meta["published"] and meta["staging_seq"] == 2
    assert len(rows(lake, "outcome_events", DAY)) == 2


# ---- 4. crash debris -------------------------------------------------------------------------------------

HOURS_AGO = time.time() - 2 * 3600


def _age(path: Path) -> None:
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(p, (HOURS_AGO, HOURS_AGO))


def test_the_ingest_step_sweeps_old_crash_debris_and_reports_it(lake):
    land_records(lake.paths.landing, [event("kept")])
    stage_pending(lake.paths, lake.staging_rules())
    staging, landing = lake.paths.staging, lake.paths.landing
    partition = lake.paths.partition_dir("outcome_events", DAY)
    partition.mkdir(parents=True)
    (staging / "event_date=2025-10-08").mkdir()
    old = {
        staging / ".tmp-0badc0de" / "event_date=2025-10-09" / "part_0.parquet": b"x" * 100,
        staging / ".scratch-0badc0de.jsonl": b"y" * 10,
        partition / ".data.parquet.0badc0de.tmp": b"z" * 1000,
        landing / ".sdk-20251009T000000Z-abc.jsonl.1234abcd.tmp": b"w",
        landing / ".sdk-crashed.tmp": b"v",
        staging / "event_date=2025-10-08" / "orphan.jsonl-123-0badc0de.parquet": b"u" * 50,
    }
    young = partition / ".data.parquet.12345678.tmp"
    for path, data in old.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for top in {staging / ".tmp-0badc0de", *old}:
        _age(top)
    young.write_bytes(b"in progress")
    named = [staging / name for entry in read_log(lake.paths) for name in entry.staged.values()]
    for path in named:
        _age(path)  # old, but named by the log: data, not debris

    meta = materialize(lake, DAY)

    assert not any(p.exists() for p in old) and young.exists()
    removed = sorted(meta["janitor_removed"])
    expected = {p.relative_to(lake.paths.root).as_posix() for p in old if ".tmp-" not in str(p)}
    expected.add((staging / ".tmp-0badc0de").relative_to(lake.paths.root).as_posix())
    assert set(removed) == expected
    assert meta["janitor_removed_files"] == len(expected)
    assert meta["janitor_removed_bytes"] == sum(len(d) for d in old.values())
    assert all(p.exists() for p in named) and meta["accepted"] == 1

    # a younger grace period is configurable
    _age(young)
    again = materialize(LakeResource(data_dir=lake.data_dir, debris_grace_seconds=60), DAY)
    assert again["janitor_removed"] == [young.relative_to(lake.paths.root).as_posix()]


STAGE_SCRIPT = textwrap.dedent(
    """
    import sys
    from learning_pipeline.defs.resources import LakeResource
    lake = LakeResource(data_dir=sys.argv[1])
    from learning_pipeline.lib.events.staging import stage_pending
    stage_pending(lake.paths, lake.staging_rules())
    """
)


def test_debris_of_a_staging_process_killed_with_sigkill_is_swept(lake):
    # A bad line sends the file through the line-by-line path, which leaves a scratch file as well.
    good = [json.dumps(event(f"k{i}", output="o" * 200)) for i in range(120_000)]
    (lake.paths.landing / "big.jsonl").write_text("\n".join(["{broken", *good]) + "\n")
    proc = subprocess.Popen([sys.executable, "-c", STAGE_SCRIPT, lake.data_dir], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".scratch-") for p in lake.paths.staging.glob(".*")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()[-2000:]
        time.sleep(0.001)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    debris = [p for p in lake.paths.staging.iterdir() if p.name.startswith((".tmp-", ".scratch-"))]
    assert debris and read_log(lake.paths) == []
    for path in debris:
        _age(path)

    meta = materialize(lake, DAY)

    assert not any(p.exists() for p in debris)
    assert sorted(meta["janitor_removed"]) == sorted(
        p.relative_to(lake.paths.root).as_posix() for p in debris
    )
    assert meta["accepted"] == len(good) and len(read_log(lake.paths)) == 1


# ---- 5. durability ---------------------------------------------------------------------------------------


def _spy_on_io(monkeypatch) -> list[tuple]:
    """Record os.fsync (with the path of the descriptor) and os.replace calls, in order, and perform them."""
    calls: list[tuple] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst, **kwargs):
        calls.append(("replace", os.path.realpath(src), os.path.realpath(dst)))
        return real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return calls


def _renames_are_durable(calls: list[tuple]) -> dict[str, int]:
    """Assert every rename was preceded by an fsync of its file and followed by one of its directory."""
    kinds = {"landing": 0, "staged": 0, "lake": 0, "set_aside": 0}
    log_syncs = [i for i, c in enumerate(calls) if c[0] == "fsync" and c[1].endswith("/staging/_log.jsonl")]
    for i, call in enumerate(calls):
        if call[0] != "replace":
            continue
        _, src, dst = call
        assert ("fsync", src) in calls[:i], f"{dst} renamed into place without an fsync of its data"
        assert ("fsync", os.path.dirname(dst)) in calls[i + 1 :], f"no fsync of the directory of {dst}"
        if "/staging/event_date=" in dst:
            kinds["staged"] += 1
            # the part is durable before the log line naming it is
            dir_sync = calls.index(("fsync", os.path.dirname(dst)), i + 1)
            assert any(j > dir_sync for j in log_syncs), f"{dst} not durable before its log line"
        elif "/.unreadable/" in dst:
            kinds["set_aside"] += 1
            assert ("fsync", os.path.dirname(src)) in calls[i + 1 :], "landing directory not fsynced"
        elif "/landing/" in dst:
            kinds["landing"] += 1
        elif "/lake/" in dst:
            kinds["lake"] += 1
    return kinds


def test_every_publish_fsyncs_data_before_rename_and_the_directory_after(lake, monkeypatch):
    """Landing batches, staged parts (before the log line that commits them) and lake partitions."""
    calls = _spy_on_io(monkeypatch)
    land_records(lake.paths.landing, [event("d1"), event("d2", "2025-10-10T00:00:00Z")])
    materialize(lake, DAY)
    monkeypatch.undo()

    kinds = _renames_are_durable(calls)
    assert kinds["landing"] == 1 and kinds["staged"] == 2 and kinds["lake"] >= 2


def test_setting_an_unreadable_file_aside_is_durable(lake, monkeypatch):
    calls = _spy_on_io(monkeypatch)
    (lake.paths.landing / "random.parquet").write_bytes(POISON["random.parquet"])
    stage_pending(lake.paths, lake.staging_rules())
    monkeypatch.undo()

    kinds = _renames_are_durable(calls)
    assert kinds["set_aside"] == 1 and kinds["staged"] == 1


# ---- 8. duplicates across days ---------------------------------------------------------------------------


@pytest.mark.parametrize("order", [["2025-10-09", "2025-10-11"], ["2025-10-11", "2025-10-09"]])
def test_an_event_redelivered_with_another_days_timestamp_is_accepted_once(lake, order):
    land_records(lake.paths.landing, [event("e1", "2025-10-09T10:00:00Z"), event("solo")])
    # the re-delivery arrives later, dated two days on
    land_records(
        lake.paths.landing, [event("e1", "2025-10-11T10:00:00Z"), event("other", "2025-10-11T11:00:00Z")]
    )

    meta = {day: materialize(lake, day) for day in order}

    accepted = {day: sorted(r["event_id"] for r in rows(lake, "outcome_events", day)) for day in order}
    assert accepted == {"2025-10-09": ["e1", "solo"], "2025-10-11": ["other"]}
    later = meta["2025-10-11"]
    assert (later["received"], later["accepted"], later["duplicates"], later["cross_day_duplicates"]) == (
        2,
        1,
        1,
        1,
    )
    assert meta["2025-10-09"]["duplicates"] == 0


def test_a_redelivery_in_another_format_and_escaping_is_still_a_duplicate(lake):
    first = '{"event_id": "\\u00e9v\\/1", "agent_name": "a", "status": "success", "timestamp": "2025-10-09T10:00:00Z"}'
    (lake.paths.landing / "a_first.jsonl").write_text(first + "\n")
    stage_pending(lake.paths, lake.staging_rules())  # arrives first
    again = event("\u00e9v/1", "2025-10-10T10:00:00Z")
    (lake.paths.landing / "b_again.parquet").write_bytes(_parquet_bytes([again]))

    assert materialize(lake, "2025-10-09")["accepted"] == 1
    later = materialize(lake, "2025-10-10")
    assert (later["accepted"], later["cross_day_duplicates"]) == (0, 1)
    assert rows(lake, "outcome_events", "2025-10-09")[0]["event_id"] == "\u00e9v/1"


def test_the_window_bounds_cross_day_duplicates_and_is_configurable(lake):
    days = ("2025-10-01", "2025-10-08", "2025-10-16")
    land_records(lake.paths.landing, [event("w", "2025-10-01T10:00:00Z")])
    land_records(lake.paths.landing, [event("w", "2025-10-08T10:00:00Z")])  # 7 days on: inside the window
    land_records(lake.paths.landing, [event("w", "2025-10-16T10:00:00Z")])  # 8 days from the nearest: outside

    assert [materialize(lake, day)["accepted"] for day in days] == [1, 0, 1]
    wide = LakeResource(data_dir=lake.data_dir, dedup_window_days=8)
    assert [materialize(wide, day)["cross_day_duplicates"] for day in days] == [0, 1, 1]
    narrow = LakeResource(data_dir=lake.data_dir, dedup_window_days=3)
    assert [materialize(narrow, day)["accepted"] for day in days] == [1, 1, 1]
    off = LakeResource(data_dir=lake.data_dir, dedup_window_days=0)
    assert materialize(off, "2025-10-08")["accepted"] == 1


def test_a_quarantined_copy_on_another_day_does_not_suppress_a_valid_one(lake):
    land_records(lake.paths.landing, [event("q", "2025-10-09T10:00:00Z", quality_score=7.0)])  # out of range
    land_records(lake.paths.landing, [event("q", "2025-10-10T10:00:00Z")])

    first, second = materialize(lake, "2025-10-09"), materialize(lake, "2025-10-10")

    assert (first["accepted"], first["quarantined"]) == (0, 1)
    assert (second["accepted"], second["duplicates"]) == (1, 0)
