"""Lake fixtures for the training-data tests: outcome events written as lake Parquet partitions."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime

import pyarrow as pa

from learning_pipeline.lib.events.schema import OUTCOME_EVENT_SCHEMA
from learning_pipeline.lib.storage.lake import LakePaths, write_parquet_atomic

_counter = 0


def event(
    agent: str = "react_agent",
    status: str = "success",
    ts: str = "2025-03-01T10:00:00",
    task_type: str | None = "summarize",
    quality: float | None = 0.9,
    input=None,
    output=None,
    **extra,
) -> dict:
    """One validated event row; JSON-valued fields are given as Python values and stored as JSON text."""
    global _counter
    _counter += 1
    row = {
        "event_id": extra.pop("event_id", f"ev-{_counter:06d}"),
        "agent_name": agent,
        "status": status,
        "timestamp": datetime.fromisoformat(ts).replace(tzinfo=UTC),
        "task_type": task_type,
        "quality_score": quality,
        "input": None if input is None else json.dumps(input),
        "output": None if output is None else json.dumps(output),
    }
    for key in ("context", "metadata"):
        if key in extra:
            extra[key] = json.dumps(extra[key])
    row.update(extra)
    return row


def write_events(paths: LakePaths, rows: list[dict]) -> dict[str, int]:
    """Write rows as lake/outcome_events/event_date=D/data.parquet (one file per date); returns counts."""
    by_date: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_date[row["timestamp"].date().isoformat()].append(row)
    for date, items in by_date.items():
        columns = {}
        for f in OUTCOME_EVENT_SCHEMA:
            if f.name == "source_file":
                values = ["fixture.jsonl"] * len(items)
            elif f.name == "record_number":
                values = list(range(len(items)))
            elif f.name == "received_at":
                values = [r["timestamp"] for r in items]
            else:
                values = [r.get(f.name) for r in items]
            columns[f.name] = pa.array(values, f.type)
        table = pa.table(columns, schema=OUTCOME_EVENT_SCHEMA)
        write_parquet_atomic(paths.partition_dir("outcome_events", date) / "data.parquet", table)
    return {d: len(v) for d, v in by_date.items()}


def write_table(paths: LakePaths, table: pa.Table) -> dict[str, int]:
    """Write an OUTCOME_EVENT_SCHEMA table (e.g. the simulator's, with lineage) as daily lake partitions."""
    import pyarrow.compute as pc

    dates = pc.strftime(table.column("timestamp"), format="%Y-%m-%d")
    counts = {}
    for date in sorted(set(dates.to_pylist())):
        part = table.filter(pc.equal(dates, date)).select(OUTCOME_EVENT_SCHEMA.names)
        write_parquet_atomic(paths.partition_dir("outcome_events", date) / "data.parquet", part)
        counts[date] = part.num_rows
    return counts
