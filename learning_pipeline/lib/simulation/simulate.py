"""Writing a simulation: JSONL files into the landing zone (with truth.json), or Parquet straight into the lake.

`write_simulation` lands the stream as the pipeline receives it (valid events, re-deliveries and bad
records, atomically published files of at most `file_events` lines); `write_lake` skips ingestion and
writes the valid events as validated lake partitions, for tests and benchmarks of what comes after.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from learning_pipeline.lib.simulation.config import DEFAULT_TASK_TYPES, SEED_EXAMPLE_EVENTS, SimulationConfig
from learning_pipeline.lib.simulation.events import generate_table, iter_day_tables, iter_event_lines
from learning_pipeline.lib.simulation.truth import SimulationTruth
from learning_pipeline.lib.storage.lake import (
    LakePaths,
    new_batch_name,
    write_bytes_atomic,
    write_parquet_atomic,
)

# The CLI, some benchmarks and tests import the first five names from here; new code imports them from the
# package (`learning_pipeline.lib.simulation`).
__all__ = [
    "DEFAULT_TASK_TYPES",
    "SEED_EXAMPLE_EVENTS",
    "SimulationConfig",
    "SimulationTruth",
    "generate_table",
    "SimulationResult",
    "load_truth",
    "write_lake",
    "write_simulation",
]


def _line_bytes(arr: pa.Array) -> memoryview:
    """The UTF-8 bytes of a string array's values, concatenated (zero-copy)."""
    if len(arr) == 0:
        return memoryview(b"")
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=width)
    start, end = int(offsets[arr.offset]), int(offsets[arr.offset + len(arr)])
    return memoryview(arr.buffers()[2])[start:end]


@dataclass
class SimulationResult:
    files: list[Path] = field(default_factory=list)
    events: int = 0  # valid, unique events
    duplicates: int = 0  # extra re-delivered copies
    bad_records: dict[str, int] = field(default_factory=dict)  # kind -> count
    lines: int = 0  # all JSONL lines written
    bytes: int = 0
    truth_path: Path | None = None

    @property
    def bad_total(self) -> int:
        return sum(self.bad_records.values())

    def summary(self) -> dict:
        return {
            "files": len(self.files),
            "events": self.events,
            "duplicates": self.duplicates,
            "bad_records": self.bad_total,
            "bad_by_kind": dict(sorted(self.bad_records.items())),
            "lines": self.lines,
            "bytes": self.bytes,
            "truth_path": str(self.truth_path) if self.truth_path else None,
        }


def write_simulation(
    config: SimulationConfig,
    data_dir: str | Path,
    prefix: str = "sim",
    write_truth: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> SimulationResult:
    """Write the simulated stream into the landing zone as JSONL files of at most `config.file_events` lines.

    Every file is published atomically. The truth goes to <data_dir>/simulation/truth.json. `progress` is called
    with (valid events generated so far, valid events in all) as the stream is generated.
    """
    paths = LakePaths.at(data_dir)
    paths.landing.mkdir(parents=True, exist_ok=True)
    result = SimulationResult()
    pending: list[pa.Array] = []
    pending_n = 0

    def flush(limit: int) -> None:
        nonlocal pending, pending_n
        take, rest, taken = [], [], 0
        for arr in pending:
            room = limit - taken
            if room <= 0:
                rest.append(arr)
            elif len(arr) <= room:
                take.append(arr)
                taken += len(arr)
            else:
                take.append(arr.slice(0, room))
                rest.append(arr.slice(room))
                taken += room
        data = b"".join(_line_bytes(a) for a in take)
        path = write_bytes_atomic(paths.landing / new_batch_name(prefix, "jsonl"), data)
        result.files.append(path)
        result.bytes += len(data)
        pending, pending_n = rest, pending_n - taken

    for lines, out in iter_event_lines(config):
        result.events += out.n
        result.duplicates += out.duplicates
        for kind, count in out.bad.items():
            result.bad_records[kind] = result.bad_records.get(kind, 0) + count
        result.lines += len(lines)
        if len(lines):
            pending.append(lines)
            pending_n += len(lines)
        while pending_n >= config.file_events:
            flush(config.file_events)
        if progress is not None:
            progress(result.events, config.days * config.events_per_day)
    if pending_n:
        flush(pending_n)

    if write_truth:
        truth_path = paths.root / "simulation" / "truth.json"
        payload = json.dumps(SimulationTruth(config).to_dict(), indent=1, default=str).encode()
        result.truth_path = write_bytes_atomic(truth_path, payload)
    return result


def write_lake(
    config: SimulationConfig, data_dir: str | Path, table_name: str = "outcome_events"
) -> list[Path]:
    """Write the valid events as lake partitions <lake>/<table_name>/event_date=D/data.parquet, one day at a time.

    The rows carry the lineage columns (see `generate_table(lineage=True)`); each file is published atomically.
    """
    paths = LakePaths.at(data_dir)
    return [
        write_parquet_atomic(paths.partition_dir(table_name, day.isoformat()) / "data.parquet", table)
        for day, table in iter_day_tables(config, lineage=True)
    ]


def load_truth(data_dir: str | Path) -> dict:
    """The truth saved by `write_simulation` under <data_dir>/simulation/truth.json."""
    return json.loads((LakePaths.at(data_dir).root / "simulation" / "truth.json").read_text())
