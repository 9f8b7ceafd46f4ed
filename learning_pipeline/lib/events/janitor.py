"""The janitor: removes what crashed writers leave behind, once it is older than a grace period.

Debris is, by name (every writer uses these names for work in progress, so no reader ever looks at them):

- `staging/.tmp-*`       a landing file being split by date (a directory of parts)
- `staging/.scratch-*`   the good lines of a landing file with bad lines, being re-read
- `.<name>.<8 hex>.tmp`  a file being published atomically (`lake.tmp_path_for`) anywhere under landing/,
                         staging/ or lake/, e.g. `lake/outcome_events/event_date=D/.data.parquet.1a2b3c4d.tmp`
- `landing/.sdk-*.tmp`   a batch the SDK was writing
- staged parts `staging/event_date=D/*.parquet` that no staging-log line names (a crash between the
  rename of the parts and the log line that commits them)

Only entries whose newest modification is older than the grace period are removed, so work in progress of
a live writer (which keeps touching its files) is never taken. Landing files, staged parts named by the log,
published partitions, lock files and `landing/.unreadable/` are never touched. The janitor also finishes a
set-aside of an unreadable landing file that a crash interrupted (see `unreadable.finish_set_aside`).
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from learning_pipeline.lib.events.staging import current_entries, read_log, stage_lock
from learning_pipeline.lib.events.unreadable import finish_set_aside
from learning_pipeline.lib.storage.lake import LakePaths, fsync_dir

DEFAULT_GRACE = timedelta(hours=1)
_ATOMIC_TMP = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")
_SDK_TMP = re.compile(r"^\.sdk-.*\.tmp$")


@dataclass
class SweepReport:
    removed: list[str] = field(default_factory=list)  # paths relative to the data directory
    removed_bytes: int = 0
    set_aside: list[str] = field(default_factory=list)  # interrupted set-asides finished


def _newest_mtime(path: Path) -> float:
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for child in path.rglob("*"):
            try:
                newest = max(newest, child.lstat().st_mtime)
            except FileNotFoundError:
                continue
    return newest


def _size(path: Path) -> int:
    if path.is_dir() and not path.is_symlink():
        return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file())
    return path.lstat().st_size


def _tmp_files(root: Path, skip: Path | None = None) -> list[Path]:
    if not root.exists():
        return []
    found = []
    for path in root.rglob(".*"):
        if skip is not None and path.is_relative_to(skip):
            continue
        if path.is_file() and (_ATOMIC_TMP.match(path.name) or _SDK_TMP.match(path.name)):
            found.append(path)
    return found


def _candidates(paths: LakePaths) -> list[Path]:
    found: list[Path] = []
    if paths.staging.exists():
        found += [p for p in paths.staging.iterdir() if p.name.startswith((".tmp-", ".scratch-"))]
        named = {paths.staging / name for entry in read_log(paths) for name in entry.staged.values()}
        found += [p for p in paths.staging.glob("event_date=*/*.parquet") if p not in named]
    found += _tmp_files(paths.landing, skip=paths.unreadable)
    found += _tmp_files(paths.staging)
    found += _tmp_files(paths.lake)
    return sorted(set(found))


def sweep_debris(paths: LakePaths, grace: timedelta = DEFAULT_GRACE, now: float | None = None) -> SweepReport:
    """Remove debris older than `grace` (see the module doc); returns what was removed.

    Runs under the staging lock, so no staged part is caught between its rename and its log line.
    """
    report = SweepReport()
    cutoff = (time.time() if now is None else now) - grace.total_seconds()
    with stage_lock(paths):
        for path in _candidates(paths):
            try:
                if _newest_mtime(path) > cutoff:
                    continue
                size = _size(path)
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                fsync_dir(path.parent)
            except FileNotFoundError:  # removed by its writer meanwhile
                continue
            report.removed.append(path.relative_to(paths.root).as_posix())
            report.removed_bytes += size
        for entry in current_entries(paths).values():
            if entry.set_aside and finish_set_aside(paths, entry):
                report.set_aside.append(entry.landing_file)
    return report
