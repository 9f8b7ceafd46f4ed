"""Landing files that cannot be read: how they are recognised, set aside and alerted.

`staging.stage_file` commits an unreadable file as one quarantine record (reason `unreadable_file`) before
anything here moves it, so the staging log marks the file even if the move never happens; the janitor finishes
an interrupted move.
"""

from __future__ import annotations

import gzip
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.parquet as pq

from learning_pipeline.lib.storage.lake import LakePaths, move_durably

if TYPE_CHECKING:
    from learning_pipeline.lib.events.staging import StagedFile

log = logging.getLogger(__name__)

PARQUET_SUFFIXES = (".parquet",)


def probe_readable(path: Path) -> str | None:
    """Read the whole file as its format requires; None when it reads, else the error.

    Parquet is decoded batch by batch, gzip is decompressed to its end; plain JSON text always reads (bytes
    that are not UTF-8 are kept as escapes and quarantined line by line).
    """
    name = path.name.lower()
    try:
        if name.endswith(PARQUET_SUFFIXES):
            for _ in pq.ParquetFile(path).iter_batches(batch_size=65536):
                pass
        elif name.endswith(".gz"):
            with open(path, "rb") as raw:
                if raw.read(2) != b"\x1f\x8b":
                    return "BadGzipFile: not a gzip stream (no gzip magic bytes)"
            with gzip.open(path, "rb") as handle:
                while handle.read(1 << 20):
                    pass
        else:
            with open(path, "rb"):
                pass
    except Exception as error:  # any failure to read the bytes makes the file unreadable
        return f"{type(error).__name__}: {error}"
    return None


def set_aside_path(paths: LakePaths, relative: str, token: str) -> Path:
    target = paths.unreadable / relative
    return target.with_name(f"{target.name}.{token}") if target.exists() else target


def alert_unreadable(paths: LakePaths, entry: StagedFile) -> None:
    """An ERROR alert per unreadable file; an alert that cannot be stored is logged, never fails staging."""
    try:
        from learning_pipeline.lib.autonomy.alerts import WEBHOOK_ENV, Alert, AlertStore, raise_and_notify

        raise_and_notify(
            AlertStore(paths),
            Alert(
                "ERROR",
                "WARNING",
                f"unreadable landing file {entry.landing_file}",
                f"{entry.landing_file} could not be read and was set aside as "
                f"landing/{entry.set_aside}: {(entry.error or '')[:1500]}",
                dedup_key=f"UNREADABLE_FILE:{entry.landing_file}:{entry.mtime_ns}:{entry.size}",
                details={"landing_file": entry.landing_file, "set_aside": entry.set_aside, "seq": entry.seq},
                source="staging",
            ),
            os.environ.get(WEBHOOK_ENV) or None,
        )
    except Exception:
        log.exception("could not raise the alert for unreadable landing file %s", entry.landing_file)


def finish_set_aside(paths: LakePaths, entry: StagedFile) -> bool:
    """Move an unreadable file (still as the log saw it) to its set-aside place; True when it moved.

    The log line is written first, so a crash before the move leaves the file marked by the log (it is not
    staged again) and the janitor finishes the move.
    """
    source = paths.landing / entry.landing_file
    target = paths.landing / entry.set_aside
    try:
        if not source.exists():  # already set aside (or removed by hand)
            return False
        stat = source.stat()
        if (stat.st_size, stat.st_mtime_ns) != (entry.size, entry.mtime_ns) or target.exists():
            return False
        move_durably(source, target)
        return True
    except OSError:
        log.exception("could not set aside unreadable landing file %s", entry.landing_file)
        return False
