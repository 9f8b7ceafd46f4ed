"""Where the pipeline keeps its files, and how it writes them without ever exposing half a file.

Every publish path is durable: the data is fsynced before it is renamed into place, and the directory is
fsynced after the rename (and after a directory is created), so after a power loss a name either points at
the complete file or does not exist.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

DATA_DIR_ENV = "LEARNING_PIPELINE_DATA_DIR"  # where every entry point finds the data directory


def _below_root(*parts: str) -> property:
    """A LakePaths property: the path `parts` below its root."""
    return property(lambda self: self.root.joinpath(*parts), doc="/".join(parts))


@dataclass(frozen=True)
class LakePaths:
    """The layout under one data directory.

    landing/                      raw micro-batches (JSONL or Parquet) from the SDK, file drops and Kafka
    landing/.unreadable/          landing files that could not be read, set aside whole (never deleted)
    staging/event_date=D/         each landing file split by event date, fields kept as JSON text
    staging/_log.jsonl            append-only log of staged landing files: their dates and counts
    lake/<table>/event_date=D/    validated, de-duplicated partitions (Hive layout)
    warehouse.duckdb              DuckDB views over the lake, for people and BI tools (.warehouse.lock: its writers)
    """

    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike) -> LakePaths:
        return cls(Path(root).expanduser().resolve())

    landing = _below_root("landing")
    unreadable = _below_root("landing", ".unreadable")
    staging = _below_root("staging")
    lake = _below_root("lake")
    warehouse = _below_root("warehouse.duckdb")

    def table(self, name: str) -> Path:
        return self.lake / name

    def partition_dir(self, table: str, event_date: str) -> Path:
        return self.table(table) / f"event_date={event_date}"

    def ensure(self) -> LakePaths:
        for path in (self.landing, self.staging, self.lake):
            path.mkdir(parents=True, exist_ok=True)
        return self


def new_batch_name(prefix: str, suffix: str) -> str:
    """A unique, time-sortable file name: `<prefix>-<UTC time>-<random>.<suffix>`."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{prefix}-{stamp}-{uuid.uuid4().hex[:12]}.{suffix}"


def tmp_path_for(final: Path) -> Path:
    # Dot-prefixed so readers that glob `*.jsonl` / `*.parquet` never see it.
    return final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")


def fsync_file(path: Path) -> None:
    """Flush a file's data to disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (names created, renamed or removed in it) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs_durable(path: Path) -> None:
    """mkdir -p, fsyncing the parent of every directory it creates."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        fsync_dir(directory.parent)


def publish(tmp: Path, final: Path) -> Path:
    """fsync, rename, fsync the directory: the file appears complete or not at all, and stays after a crash."""
    fsync_file(tmp)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    return final


def move_durably(source: Path, target: Path) -> Path:
    """Rename a complete file to another directory of the same file system, durably in both directories."""
    make_dirs_durable(target.parent)
    fsync_file(source)
    os.replace(source, target)
    fsync_dir(target.parent)
    fsync_dir(source.parent)
    return target


def write_bytes_atomic(final: Path, data: bytes) -> Path:
    make_dirs_durable(final.parent)
    tmp = tmp_path_for(final)
    try:
        tmp.write_bytes(data)
        return publish(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet_atomic(final: Path, table: pa.Table) -> Path:
    make_dirs_durable(final.parent)
    tmp = tmp_path_for(final)
    try:
        pq.write_table(table, tmp, compression="zstd")
        return publish(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_jsonl_atomic(final: Path, records: list[dict]) -> Path:
    payload = "".join(json.dumps(r, default=str, separators=(",", ":")) + "\n" for r in records)
    return write_bytes_atomic(final, payload.encode("utf-8"))


def land_records(landing_dir: Path, records: list[dict], prefix: str = "batch") -> Path:
    """Write one micro-batch of event dicts into the landing zone as an atomically published JSONL file."""
    return write_jsonl_atomic(Path(landing_dir) / new_batch_name(prefix, "jsonl"), records)


def land_raw_lines(
    landing_dir: Path, lines: list[str], source_refs: list[str | None] | None = None, prefix: str = "raw"
) -> Path:
    """Land undecoded records (e.g. Kafka message values) as a raw-lines Parquet batch.

    Staging treats a Parquet landing file with a `raw_record` column as one record per row, exactly like
    a JSONL line, and carries `source_ref` (e.g. `topic/partition/offset`) into the quarantine.
    """
    refs = source_refs if source_refs is not None else [None] * len(lines)
    table = pa.table({"raw_record": pa.array(lines, pa.string()), "source_ref": pa.array(refs, pa.string())})
    return write_parquet_atomic(Path(landing_dir) / new_batch_name(prefix, "parquet"), table)
