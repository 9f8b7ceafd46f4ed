"""Parts staged before records were checked at staging (every field as JSON text) still validate, to the same
rows as the same records staged today."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from learning_pipeline.lib.events.schema import FIELD_NAMES
from learning_pipeline.lib.events.staging import StagedFile, StagingRules, log_snapshot, stage_pending
from learning_pipeline.lib.events.validation import validate_partition
from learning_pipeline.lib.storage.lake import LakePaths

RULES = StagingRules(first_date=date(2025, 1, 1))
DAY = "2025-10-09"
RECORDS = [
    {
        "event_id": "ok",
        "agent_name": "a",
        "timestamp": "2025-10-09T10:00:00Z",
        "status": "Success",
        "tags": ["x"],
    },
    {
        "event_id": "bad",
        "agent_name": "a",
        "timestamp": "2025-10-09T11:00:00Z",
        "status": "success",
        "tokens_used": "many",
    },
    {"event_id": "ok", "agent_name": "again", "timestamp": "2025-10-09T12:00:00Z", "status": "failure"},
]


def _legacy_part(paths: LakePaths) -> None:
    """One landing file as the former staging wrote it: lineage, parse columns, each field as JSON text."""
    received = datetime(2025, 10, 9, 13, tzinfo=UTC)
    columns = {
        "source_file": ["old.jsonl"] * len(RECORDS),
        "received_at": pa.array([received] * len(RECORDS), pa.timestamp("us", tz="UTC")),
        "record_number": pa.array(range(1, len(RECORDS) + 1), pa.int64()),
        "source_ref": pa.nulls(len(RECORDS), pa.string()),
        "parse_error": pa.nulls(len(RECORDS), pa.string()),
        "raw_record": pa.nulls(len(RECORDS), pa.string()),
    }
    for name in FIELD_NAMES:
        columns[name] = pa.array(
            [json.dumps(r[name], separators=(",", ":")) if name in r else None for r in RECORDS], pa.string()
        )
    part = paths.staging / f"event_date={DAY}" / "old.parquet"
    part.parent.mkdir(parents=True)
    pq.write_table(pa.table(columns), part)
    entry = StagedFile(
        1,
        "old.jsonl",
        1,
        1,
        received.isoformat(),
        len(RECORDS),
        {DAY: 3},
        {DAY: f"event_date={DAY}/old.parquet"},
    )
    (paths.staging / "_log.jsonl").write_text(entry.to_json() + "\n")


def _validate(paths: LakePaths) -> tuple[list[dict], list[dict], dict]:
    snapshot = log_snapshot(paths)
    accepted, quarantine = paths.root / "a.parquet", paths.root / "q.parquet"
    with duckdb.connect() as con:
        counts = validate_partition(con, snapshot.files_for(paths, DAY), RULES, accepted, quarantine)
    drop = {"source_file", "received_at"}
    rows = [
        [{k: v for k, v in r.items() if k not in drop} for r in pq.read_table(p).to_pylist()]
        for p in (accepted, quarantine)
    ]
    return rows[0], rows[1], {k: v for k, v in counts.__dict__.items() if k != "staging_seq"}


def test_a_part_staged_in_the_former_layout_validates_like_a_new_one(tmp_path):
    legacy = LakePaths.at(tmp_path / "legacy").ensure()
    _legacy_part(legacy)
    current = LakePaths.at(tmp_path / "current").ensure()
    (current.landing / "old.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    stage_pending(current, RULES)

    old_accepted, old_quarantined, old_counts = _validate(legacy)
    assert [r["event_id"] for r in old_accepted] == ["ok"] and old_accepted[0]["status"] == "success"
    assert [r["reason"] for r in old_quarantined] == ["wrong_type"]
    assert (old_counts["received"], old_counts["duplicates"]) == (3, 1)
    assert _validate(current) == (old_accepted, old_quarantined, old_counts)
