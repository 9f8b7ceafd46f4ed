"""Staging: read each landing file once, check its records and split them by event date into Parquet.

A landing file (JSONL, optionally gzipped, or Parquet) is read once. Each record is typed and checked as it
is read (`checks.staged_sql`: typed columns, the list of rules it breaks, the raw text of a rejected record)
and routed to the UTC date of its `timestamp`; records without a usable timestamp (malformed, missing,
unparseable, far in the future, before the first partition) are routed to the date they arrived. Nothing is
dropped here: validation (`validation.py`) de-duplicates each day and publishes accepted and quarantined
records, so re-running a partition never re-parses JSON.

Each staged landing file gets one line in the append-only staging log (`staging/_log.jsonl`), written under a
file lock with a sequence number. The log is the commit point: staged Parquet without a log line is never
read. The landing-zone sensor follows the log with its cursor; partitions read the log to find their files.
Staged parts are fsynced before they are renamed into place and their directories after, so the log (fsynced
itself) never names a part a power loss could leave empty.

A record with a repeated top-level key (`{"event_id": "a", "event_id": "b", ...}`) is rejected: it is
quarantined as `malformed_json` with the details `repeated key "event_id"`. JSON parsers disagree on which
copy wins, so accepting either would let two readers see two different events; the rest of the file is read.

A landing file that cannot be read at all (random bytes or a truncated Parquet file, a truncated gzip stream,
plain text named `.gz`, or any other content the readers refuse) never stops staging: it is recorded as one
quarantine record (`record_number` 0, reason `unreadable_file`, the error in `details`) on the day it arrived,
moved whole to `landing/.unreadable/` (never deleted), and an ERROR alert is raised; every other file goes on.
Failures of the environment (disk full, out of memory) on a readable file still raise: the file stays pending.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa

from learning_pipeline.lib.events.checks import RAW_RECORD_KEEP_BYTES, staged_sql
from learning_pipeline.lib.events.schema import FIELD_NAMES
from learning_pipeline.lib.events.unreadable import (
    alert_unreadable,
    finish_set_aside,
    probe_readable,
    set_aside_path,
)
from learning_pipeline.lib.storage.lake import LakePaths, fsync_dir, fsync_file, make_dirs_durable
from learning_pipeline.lib.storage.warehouse import sql_literal

log = logging.getLogger(__name__)

JSON_SUFFIXES = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz", ".json.gz")
PARQUET_SUFFIXES = (".parquet",)
RAW_RECORD_COLUMN = "raw_record"
SOURCE_REF_COLUMN = "source_ref"

DEFAULT_MAX_RECORD_BYTES = 1024 * 1024
DEFAULT_MAX_FUTURE_SKEW = timedelta(hours=1)
DEFAULT_DEDUP_WINDOW_DAYS = 7
# Largest JSON object the fast reader accepts; bigger records are handled line by line (and are oversized).
MAX_LINE_BYTES = 256 * 1024 * 1024
UNREADABLE_REASON = "unreadable_file"
# Errors of the machine rather than of the file: a readable file that meets one stays pending.
ENVIRONMENT_ERRORS = (
    OSError,
    MemoryError,
    duckdb.IOException,
    duckdb.OutOfMemoryException,
    duckdb.InterruptException,
)


@dataclass(frozen=True)
class StagingRules:
    first_date: date
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    max_future_skew: timedelta = DEFAULT_MAX_FUTURE_SKEW
    # An event_id seen on another day at most this many days away is a duplicate (0: per day only).
    dedup_window_days: int = DEFAULT_DEDUP_WINDOW_DAYS


@dataclass(frozen=True)
class StagedFile:
    """One line of the staging log: a landing file and where its records went."""

    seq: int
    landing_file: str
    size: int
    mtime_ns: int
    staged_at: str
    records: int
    dates: dict[str, int] = field(default_factory=dict)
    staged: dict[str, str] = field(default_factory=dict)
    # For an unreadable file: why, and where it was set aside (relative to the landing zone).
    error: str | None = None
    set_aside: str | None = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


def is_landing_file(path: Path) -> bool:
    name = path.name.lower()
    return not name.startswith(".") and name.endswith(JSON_SUFFIXES + PARQUET_SUFFIXES)


def list_landing_files(paths: LakePaths) -> list[Path]:
    """Landing files, skipping dot-files and dot-directories (temporary files, `.unreadable/`)."""
    return sorted(
        p
        for p in paths.landing.rglob("*")
        if p.is_file()
        and is_landing_file(p)
        and not any(part.startswith(".") for part in p.relative_to(paths.landing).parts)
    )


def _log_path(paths: LakePaths) -> Path:
    return paths.staging / "_log.jsonl"


@contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _log_lock(paths: LakePaths):
    return _file_lock(paths.staging / "_log.lock")


def stage_lock(paths: LakePaths):
    """Held while landing files are staged (and by the janitor): staged parts and their log lines appear
    together under it."""
    return _file_lock(paths.staging / "_stage.lock")


def read_log(paths: LakePaths, after_seq: int = 0) -> list[StagedFile]:
    """Log entries with seq > after_seq; a torn last line (crash mid-append) is ignored."""
    log = _log_path(paths)
    if not log.exists():
        return []
    entries = []
    with open(log, encoding="utf-8") as handle:
        for line in handle:
            try:
                entry = StagedFile(**json.loads(line))
            except (json.JSONDecodeError, TypeError):
                continue
            if entry.seq > after_seq:
                entries.append(entry)
    return entries


def current_entries(paths: LakePaths) -> dict[str, StagedFile]:
    """The latest log entry of every landing file."""
    return {entry.landing_file: entry for entry in read_log(paths)}


@dataclass(frozen=True)
class LogSnapshot:
    """The staging log as one reader saw it: `seq` is the highest sequence number it included; `log_id`
    names this log (the time of its first line), so sequence numbers of a rebuilt log are never compared with
    those of the one it replaced."""

    seq: int
    entries: dict[str, StagedFile]
    log_id: str = ""

    def files_for(self, paths: LakePaths, event_date: str) -> list[Path]:
        """Staged Parquet of one date, from the latest entry of each landing file, in landing-file order."""
        ordered = sorted(self.entries.values(), key=lambda e: e.landing_file)
        return [paths.staging / e.staged[event_date] for e in ordered if event_date in e.staged]

    def days(self) -> set[str]:
        return {day for entry in self.entries.values() for day in entry.staged}

    def neighbor_files(self, paths: LakePaths, event_date: str, window_days: int) -> list[Path]:
        """Staged Parquet of the other days at most window_days before or after event_date."""
        center = date.fromisoformat(event_date)
        days = sorted(
            d
            for d in self.days()
            if d != event_date and abs((date.fromisoformat(d) - center).days) <= window_days
        )
        return [file for day in days for file in self.files_for(paths, day)]


def log_snapshot(paths: LakePaths) -> LogSnapshot:
    entries = read_log(paths)
    return LogSnapshot(
        max((e.seq for e in entries), default=0),
        {e.landing_file: e for e in entries},
        entries[0].staged_at if entries else "",
    )


def _append_log(paths: LakePaths, entry: StagedFile) -> StagedFile:
    with _log_lock(paths):
        last = read_log(paths)
        seq = (last[-1].seq if last else 0) + 1
        entry = StagedFile(**{**entry.__dict__, "seq": seq})
        created = not _log_path(paths).exists()
        with open(_log_path(paths), "a", encoding="utf-8") as handle:
            handle.write(entry.to_json() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if created:
            fsync_dir(paths.staging)
    return entry


def _file_id(relative: str) -> str:
    """A file-system-safe, unique name for a landing file (its name is data, never a path)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", relative)[-80:].lstrip(".")
    return f"{slug}-{hashlib.sha256(relative.encode()).hexdigest()[:12]}"


def _json_columns_sql() -> str:
    return "{" + ", ".join(f"{sql_literal(name)}: 'JSON'" for name in FIELD_NAMES) + "}"


_NO_ERROR = "NULL::VARCHAR AS parse_error, NULL::VARCHAR AS raw_record"


def _read_json_sql(path: Path) -> str:
    """DuckDB's JSON reader with every field as JSON text: the fast path, refused by files with bad lines."""
    fields = ", ".join(f'"{f}"::VARCHAR AS "{f}"' for f in FIELD_NAMES)
    return (
        f"SELECT row_number() OVER () AS record_number, {fields} FROM read_json({sql_literal(str(path))}, "
        f"columns = {_json_columns_sql()}, format = 'newline_delimited', records = true, "
        f"maximum_object_size = {MAX_LINE_BYTES})"
    )


def _classify_sql(raw_line: str, max_bytes: int, repeated_keys: bool) -> str:
    """Why a raw line is not a record we can read (NULL when it is); the JSON parse runs once per line.

    repeated_keys: also look for a repeated top-level key (a second parse, listing the keys).
    """
    repeated = f"""WHEN len(json_keys({raw_line})) <> len(list_distinct(json_keys({raw_line})))
          THEN 'malformed_json: repeated key ' || list_transform(list_filter(list_distinct(json_keys({raw_line})),
               lambda k: len(list_filter(json_keys({raw_line}), lambda j: j = k)) > 1), lambda k: to_json(k))[1]"""
    return f"""CASE
        WHEN {raw_line} IS NULL THEN 'malformed_json: empty record'
        WHEN strlen({raw_line}) > {max_bytes}
          THEN 'oversized_payload: record of ' || strlen({raw_line}) || ' bytes exceeds {max_bytes}'
        WHEN NOT json_valid({raw_line}) THEN 'malformed_json: not valid JSON'
        WHEN left(ltrim({raw_line}), 1) <> '{{'
          THEN 'malformed_json: a record must be a JSON object, got ' || json_type({raw_line})
        {repeated if repeated_keys else ""}
    END"""


def _load_lines(con: duckdb.DuckDBPyConnection, path: Path, max_bytes: int, repeated_keys: bool) -> None:
    """Temp table `lines(record_number, raw_line, source_ref, parse_error)`, one row per record."""
    literal = sql_literal(str(path))
    if path.name.lower().endswith(PARQUET_SUFFIXES):
        source = (
            f"SELECT {RAW_RECORD_COLUMN}::VARCHAR AS raw_line, {SOURCE_REF_COLUMN}::VARCHAR AS source_ref "
            f"FROM read_parquet({literal}, union_by_name = true)"
        )
    else:
        source = (
            "SELECT line AS raw_line, NULL::VARCHAR AS source_ref "
            f"FROM read_csv({literal}, columns = {{'line': 'VARCHAR'}}, "
            "header = false, delim = '\\0', quote = '', escape = '', auto_detect = false, "
            f"max_line_size = {MAX_LINE_BYTES}) WHERE trim(line) <> ''"
        )

    def create(source_sql: str) -> None:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE lines AS SELECT row_number() OVER () AS record_number, raw_line, "
            f"source_ref, {_classify_sql('raw_line', max_bytes, repeated_keys)} AS parse_error FROM ({source_sql})"
        )

    try:
        create(source)
    except (duckdb.InvalidInputException, duckdb.ConversionException):
        # Bytes that are not UTF-8: decode them as visible \xNN escapes so each record is kept and quarantined.
        data = path.read_bytes()
        if path.name.lower().endswith(".gz"):
            data = gzip.decompress(data)
        text = pa.array(data.decode("utf-8", errors="backslashreplace").split("\n"), pa.string())
        con.register("decoded_lines", pa.table({"line": text}))
        try:
            create(
                "SELECT line AS raw_line, NULL::VARCHAR AS source_ref FROM decoded_lines WHERE trim(line) <> ''"
            )
        finally:
            con.unregister("decoded_lines")


def _line_by_line_sql(
    con: duckdb.DuckDBPyConnection, path: Path, rules: StagingRules, scratch: Path, repeated_keys: bool
) -> str:
    """Records of a file with bad lines: bad lines keep their reason, good ones still go through read_json.

    The good lines are written to a scratch JSONL (minified, in order) and read back with the fast reader,
    so a single bad line does not make the whole file pay for a per-line JSON transform.
    """
    _load_lines(con, path, rules.max_record_bytes, repeated_keys)
    con.execute(
        "COPY (SELECT CASE WHEN contains(raw_line, chr(10)) THEN json(raw_line)::VARCHAR ELSE raw_line END "
        "FROM lines WHERE parse_error IS NULL ORDER BY record_number) "
        f"TO {sql_literal(str(scratch))} (FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\\0')"
    )
    nulls = ", ".join(f'NULL::VARCHAR AS "{f}"' for f in FIELD_NAMES)
    fields = ", ".join(f'j."{f}"' for f in FIELD_NAMES)
    return f"""
    SELECT g.record_number, g.source_ref, {_NO_ERROR}, {fields}
    FROM ({_read_json_sql(scratch)}) AS j
    JOIN (SELECT record_number, source_ref, row_number() OVER (ORDER BY record_number) AS k
          FROM lines WHERE parse_error IS NULL) AS g ON g.k = j.record_number
    UNION ALL
    SELECT record_number, source_ref, parse_error, left(raw_line, {RAW_RECORD_KEEP_BYTES}) AS raw_record, {nulls}
    FROM lines WHERE parse_error IS NOT NULL"""


def _fields_source_sql(con: duckdb.DuckDBPyConnection, path: Path) -> str | None:
    """SQL giving record_number, source_ref, parse_error, raw_record and one JSON-text column per field.

    None for raw-lines Parquet batches, which are always read line by line.
    """
    if not path.name.lower().endswith(PARQUET_SUFFIXES):
        return (
            f"SELECT record_number, NULL::VARCHAR AS source_ref, {_NO_ERROR}, * EXCLUDE (record_number) "
            f"FROM ({_read_json_sql(path)})"
        )
    literal = sql_literal(str(path))
    columns = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM read_parquet({literal})").fetchall()}
    if RAW_RECORD_COLUMN in columns:
        return None
    fields = ", ".join(
        f'to_json("{f}")::VARCHAR AS "{f}"' if f in columns else f'NULL::VARCHAR AS "{f}"'
        for f in FIELD_NAMES
    )
    return (
        f"SELECT row_number() OVER () AS record_number, NULL::VARCHAR AS source_ref, {_NO_ERROR}, {fields} "
        f"FROM read_parquet({literal})"
    )


def _routed_sql(source_sql: str, landing_file: str, received_at: datetime, rules: StagingRules) -> str:
    """The file's records checked (`checks.staged_sql`), with their lineage and routing date."""
    lineage = (
        f"SELECT {sql_literal(landing_file)} AS source_file, {sql_literal(received_at.isoformat())}::TIMESTAMPTZ "
        f"AS received_at, src.* FROM ({source_sql}) AS src"
    )
    return staged_sql(lineage, rules)


def _connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"threads": threads} if threads else {})
    con.execute("SET TimeZone = 'UTC'")
    return con


_COPY_OPTIONS = (
    # Small row groups: a day's validation then reads its staged files on every core.
    # zstd's fastest level: as small as the default level on these records, at less CPU.
    "(FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, ROW_GROUP_SIZE 16384, PARTITION_BY (event_date), "
    "FILENAME_PATTERN 'part_{i}')"
)


def _copy_records(con, path: Path, relative: str, received_at: datetime, rules: StagingRules, out_dir: Path):
    """Write the file's records, split by routing date, under out_dir/event_date=D/."""
    target = sql_literal(str(out_dir))
    source = _fields_source_sql(con, path)
    try:
        if source is None:
            raise duckdb.InvalidInputException("raw-lines batch")
        con.execute(f"COPY ({_routed_sql(source, relative, received_at, rules)}) TO {target} {_COPY_OPTIONS}")
    except duckdb.InvalidInputException:
        # The fast reader refuses files with bad lines; split those off line by line and keep each one. Lines
        # are searched for a repeated key (a costly second parse) only when the fast reader refuses the good
        # lines again: it refuses a repeated key too.
        scratch = out_dir.with_name(out_dir.name.replace(".tmp-", ".scratch-", 1) + ".jsonl")
        for repeated_keys in (False, True):
            shutil.rmtree(out_dir, ignore_errors=True)
            source = _line_by_line_sql(con, path, rules, scratch, repeated_keys)
            try:
                con.execute(
                    f"COPY ({_routed_sql(source, relative, received_at, rules)}) TO {target} {_COPY_OPTIONS}"
                )
                return
            except duckdb.InvalidInputException:
                if repeated_keys:
                    raise


def _copy_unreadable(con, relative: str, received_at: datetime, rules: StagingRules, out_dir: Path, why: str):
    """Write the one quarantine record standing for an unreadable file (record 0, routed to its arrival day)."""
    nulls = ", ".join(f'NULL::VARCHAR AS "{f}"' for f in FIELD_NAMES)
    source = (
        f"SELECT 0::BIGINT AS record_number, NULL::VARCHAR AS source_ref, {sql_literal(why)} AS parse_error, "
        f"NULL::VARCHAR AS raw_record, {nulls}"
    )
    con.execute(
        f"COPY ({_routed_sql(source, relative, received_at, rules)}) TO {sql_literal(str(out_dir))} {_COPY_OPTIONS}"
    )


def _commit_parts(con, paths: LakePaths, out_dir: Path, file_id: str, relative: str):
    """Move each part durably into staging/event_date=D/ (fsync part, rename, fsync directory)."""
    counts: dict[str, int] = {}
    staged: dict[str, str] = {}
    for part in sorted(out_dir.glob("event_date=*/*.parquet")):
        day = part.parent.name.removeprefix("event_date=")
        if day in staged:
            raise RuntimeError(f"expected one staged part for {relative} on {day}")
        counts[day] = con.execute(f"SELECT count(*) FROM read_parquet({sql_literal(str(part))})").fetchone()[
            0
        ]
        final = paths.staging / f"event_date={day}" / f"{file_id}.parquet"
        make_dirs_durable(final.parent)
        fsync_file(part)
        os.replace(part, final)
        staged[day] = final.relative_to(paths.staging).as_posix()
    for directory in {(paths.staging / name).parent for name in staged.values()}:
        fsync_dir(directory)
    return counts, staged


def stage_file(
    paths: LakePaths,
    path: Path,
    rules: StagingRules,
    received_at: datetime | None = None,
    threads: int | None = None,
) -> StagedFile | None:
    """Split one landing file by routing date into staging Parquet and commit it to the log.

    An unreadable file is committed as one `unreadable_file` record, then set aside and alerted
    (`unreadable.py`).
    None when the file vanished before it could be staged.
    """
    relative = path.relative_to(paths.landing).as_posix()
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    received_at = received_at or datetime.now(UTC)
    token = uuid.uuid4().hex[:8]
    out_dir = paths.staging / f".tmp-{token}"
    file_id = f"{_file_id(relative)}-{token}"
    paths.staging.mkdir(parents=True, exist_ok=True)
    error = set_aside = None
    con = _connect(threads)
    try:
        try:
            _copy_records(con, path, relative, received_at, rules, out_dir)
        except Exception as failure:
            error = probe_readable(path)
            if error is None:
                if isinstance(failure, ENVIRONMENT_ERRORS) or not isinstance(
                    failure, (duckdb.Error, ValueError)
                ):
                    raise
                error = f"{type(failure).__name__}: {failure}"
            error = " ".join(error.split())[:4000]
            shutil.rmtree(out_dir, ignore_errors=True)
            set_aside = set_aside_path(paths, relative, token).relative_to(paths.landing).as_posix()
            _copy_unreadable(
                con,
                relative,
                received_at,
                rules,
                out_dir,
                f"{UNREADABLE_REASON}: {error}; set aside as landing/{set_aside}",
            )
        counts, staged = _commit_parts(con, paths, out_dir, file_id, relative)
    finally:
        con.close()
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.with_name(f".scratch-{token}.jsonl").unlink(missing_ok=True)
    entry = _append_log(
        paths,
        StagedFile(
            seq=0,
            landing_file=relative,
            size=stat.st_size,
            mtime_ns=stat.st_mtime_ns,
            staged_at=received_at.isoformat(),
            records=int(sum(counts.values())),
            dates={day: int(n) for day, n in counts.items()},
            staged=staged,
            error=error,
            set_aside=set_aside,
        ),
    )
    if set_aside is not None:
        finish_set_aside(paths, entry)
        log.warning("unreadable landing file %s set aside as landing/%s: %s", relative, set_aside, error)
        alert_unreadable(paths, entry)
    return entry


def pending_landing_files(paths: LakePaths) -> list[Path]:
    """Landing files never staged, or changed since they were."""
    known = current_entries(paths)
    pending = []
    for path in list_landing_files(paths):
        entry = known.get(path.relative_to(paths.landing).as_posix())
        try:
            stat = path.stat()
        except FileNotFoundError:  # removed since it was listed
            continue
        if entry is None or (entry.size, entry.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
            pending.append(path)
    return pending


def stage_pending(paths: LakePaths, rules: StagingRules, max_files: int | None = None) -> list[StagedFile]:
    """Stage every pending landing file (at most max_files); idempotent.

    Processes (the landing sensor, ingest runs) take turns under a file lock, and each re-reads the log
    inside it, so a landing file is never staged twice. Within one process, files are staged on one thread
    per core: DuckDB reads a single JSON file on one core.
    """
    with stage_lock(paths):
        pending = pending_landing_files(paths)[:max_files]
        workers = max(1, min(len(pending), os.cpu_count() or 1))
        # The cores are shared out between the files staged at once, not oversubscribed.
        threads = max(1, (os.cpu_count() or 1) // workers)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            # Arrival times in landing order, taken before the threads start: a file listed later never
            # counts as arriving first (it would win the de-duplication of an event both files carry).
            now = datetime.now(UTC)
            arrivals = [now + timedelta(microseconds=i) for i in range(len(pending))]
            staged = list(
                pool.map(lambda path, at: stage_file(paths, path, rules, at, threads), pending, arrivals)
            )
    return [entry for entry in staged if entry is not None]


def staged_files_for(paths: LakePaths, event_date: str) -> list[Path]:
    """Staged Parquet of one date, from the latest log entry of each landing file, in landing-file order."""
    return log_snapshot(paths).files_for(paths, event_date)
