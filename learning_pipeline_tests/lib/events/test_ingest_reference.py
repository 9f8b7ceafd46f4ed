"""Ingestion gives the same rows as the reference: a small, tricky landing zone staged and validated, compared
row by row (every column but the arrival time) with `ingest_reference.json`.

The reference was captured from the staging + validation code of commit f86dd70 (before ingestion read the
records once into typed staged parts), so a faster path that changes any accepted or quarantined row, any
reason or detail, any count or the row order fails here. Re-capture it only for a deliberate change of
behaviour: `python -m learning_pipeline_tests.lib.events.test_ingest_reference`.
"""

from __future__ import annotations

import copy
import gzip
import json
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from learning_pipeline.lib.events.schema import REJECT_REASONS
from learning_pipeline.lib.events.staging import StagingRules, log_snapshot, stage_pending
from learning_pipeline.lib.events.validation import validate_partition
from learning_pipeline.lib.simulation.simulate import SEED_EXAMPLE_EVENTS
from learning_pipeline.lib.storage.lake import LakePaths, write_parquet_atomic

REFERENCE = Path(__file__).with_name("ingest_reference.json")
RULES = StagingRules(first_date=date(2025, 1, 1), max_record_bytes=4000, dedup_window_days=7)
DAY, NEXT_DAY, FAR_DAY = "2025-10-09", "2025-10-10", "2025-10-30"


def _event(event_id: str, **fields) -> dict:
    record = copy.deepcopy(SEED_EXAMPLE_EVENTS[0])
    record["event_id"] = event_id
    record.update(fields)
    return record


def _line(event_id: str, **fields) -> str:
    return json.dumps(_event(event_id, **fields))


def _land(landing: Path) -> None:
    """Every kind of input the ingest path distinguishes, over three event days and the arrival day."""
    mixed = [
        _line("a1"),
        _line("a2", timestamp="2025-10-10T03:00:00+02:00", status=" SUCCESS "),  # 2025-10-10T01:00Z
        "",
        '{"event_id": "m1", "agent_name": ',
        "[1, 2, 3]",
        '"just a string"',
        '{"event_id": "k1", "event_id": "k2", "agent_name": "a", "timestamp": "2025-10-09T01:00:00Z"}',
        json.dumps({k: v for k, v in _event("r1").items() if k != "agent_name"}),
        json.dumps({k: v for k, v in _event("r2").items() if k != "timestamp"}),
        _line("t1", tokens_used="lots", latency_ms="fast"),
        _line("t2", tags=["ok", 3]),
        _line("t3", context=["high"], metadata="x"),
        _line("t4", timestamp="yesterday at noon"),
        _line("t5", agent_name=42, tokens_used=1.5),
        _line("o1", quality_score=1.7, cost_usd=-1, selection_propensity=0),
        _line("o2", agent_name="x" * 300),
        _line("o3", agent_name="   "),
        _line("s1", status="exploded", severity="meh"),
        _line("s2", severity="meh"),
        _line("f1", timestamp="2999-01-01T00:00:00Z"),
        _line("b1", timestamp="2024-12-31T23:00:00Z"),
        _line("big", output="y" * 5000),
        _line("a1", agent_name="second copy in the same file"),
        _line("n1", quality_score=None, input=None, tags=[], context={}, retry_count=0, severity="Error"),
        _line("e1", input={"nested": {"y": 1}}, output=[1, "two", None], run_id="r\u00e9\u2603").replace(
            '{"y": 1}', '{"y": 1, "y": 2}'
        ),
    ]
    (landing / "a_mixed.jsonl").write_text("\n".join(mixed) + "\n", encoding="utf-8")
    clean = [
        _line("a1", agent_name="re-delivered"),
        _line("c1", timestamp="2025-10-09T23:59:59.999999Z"),
        _line("a2", timestamp="2025-10-09T05:00:00Z"),  # another day's copy of a2, landed later
        _line("w1", timestamp="2025-10-30T10:00:00Z"),
        _line("w2", timestamp="2025-10-09T10:00:00Z"),
    ]
    (landing / "b_clean.jsonl").write_text("\n".join(clean) + "\n", encoding="utf-8")
    late = [_line("w1", timestamp="2025-10-10T10:00:00Z"), _line("c1", timestamp="2025-10-10T00:00:00Z")]
    (landing / "c_late.jsonl").write_text("\n".join(late) + "\n")
    (landing / "d.jsonl.gz").write_bytes(gzip.compress((_line("gz1") + "\n" + _line("c1") + "\n").encode()))
    good = _line("u1").encode()
    (landing / "e_latin.jsonl").write_bytes(
        good
        + b"\n"
        + b'{"event_id": "bad-bytes", "agent_name": "\xff\xfe"}'
        + b"\r\n"
        + good[:-1]
        + b', "x": 1}\r\n'
    )
    at = [datetime(2025, 10, 9, hour, tzinfo=UTC) for hour in (8, 9)]
    typed = pa.table({"event_id": ["pq1", "pq2"], "agent_name": ["p", "p"], "timestamp": at})
    typed = typed.append_column("status", pa.array(["Partial", "nope"])).append_column(
        "tokens_used", pa.array([7, None], pa.int64())
    )
    write_parquet_atomic(landing / "f_drop.parquet", typed)
    raw = [json.dumps(_event("raw1"), indent=2), "\x00garbage", _line("raw2", status="timeout"), None]
    refs = ["t/0/1", "t/0/2", None, "t/0/4"]
    write_parquet_atomic(landing / "g_raw.parquet", pa.table({"raw_record": raw, "source_ref": refs}))
    (landing / "h_poison.parquet").write_bytes(b"PAR1 this is not parquet")


def _rows(path: Path) -> list[dict]:
    rows = pq.read_table(path).to_pylist()
    return [{k: _plain(v) for k, v in row.items() if k != "received_at"} for row in rows]


def _plain(value):
    return value.isoformat() if isinstance(value, datetime) else value


def ingest(root: Path) -> dict:
    """Land the inputs, stage them, validate every day; the outputs keyed by day (the arrival day as
    'arrival', since it is the day the test runs)."""
    paths = LakePaths.at(root).ensure()
    _land(paths.landing)
    stage_pending(paths, RULES)
    snapshot = log_snapshot(paths)
    today = datetime.now(UTC).date().isoformat()
    out = {}
    for day in sorted(snapshot.days()):
        accepted = paths.partition_dir("outcome_events", day) / "data.parquet"
        quarantine = paths.partition_dir("quarantined_events", day) / "data.parquet"
        with duckdb.connect() as con:
            counts = validate_partition(
                con,
                snapshot.files_for(paths, day),
                RULES,
                accepted,
                quarantine,
                neighbor_files=snapshot.neighbor_files(paths, day, RULES.dedup_window_days),
            )
        out["arrival" if day == today else day] = {
            "counts": {k: v for k, v in counts.__dict__.items() if k not in ("staging_seq", "published")},
            "accepted": _rows(accepted),
            "quarantined": _rows(quarantine),
        }
    return out


def test_ingestion_matches_the_reference_rows(tmp_path):
    expected = json.loads(REFERENCE.read_text())
    got = json.loads(json.dumps(ingest(tmp_path / "data")))
    assert sorted(got) == sorted(expected)
    for day in expected:
        assert got[day]["counts"] == expected[day]["counts"], day
        assert got[day]["quarantined"] == expected[day]["quarantined"], day
        assert got[day]["accepted"] == expected[day]["accepted"], day
    # The reference exercises every branch it claims to: each reason, duplicates within and across days.
    reasons = {r["reason"] for day in expected.values() for r in day["quarantined"]}
    assert reasons == set(REJECT_REASONS)
    assert sum(day["counts"]["cross_day_duplicates"] for day in expected.values()) >= 2


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        REFERENCE.write_text(json.dumps(ingest(Path(tmp) / "data"), indent=1, sort_keys=True) + "\n")
