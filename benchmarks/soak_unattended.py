"""Soak: the pipeline left alone under a real `dagster-daemon`, with poison files and runs killed at random.

    python benchmarks/soak_unattended.py                    # 30 minutes
    python benchmarks/soak_unattended.py --minutes 3        # a short version

A temporary DAGSTER_HOME holds the project's `dagster.yaml` (run queue, pools, run monitoring); the daemon
runs the project's code location (`workspace.yaml`) on a temporary data directory. For `--minutes`:

- every `--interval` seconds (jittered) a file lands in `landing/`, published atomically as every writer does
  (dot-file, then rename). Nine in ten are JSONL batches of events dated today or yesterday (UTC), a few
  records invalid (quarantined) and a few re-deliveries of earlier events (duplicates). One in ten is poison,
  in turn: random bytes named `.parquet`, a truncated `.parquet`, a truncated `.jsonl.gz`, plain text named
  `.gz`, and a JSONL batch whose lines repeat a top-level key (`{"event_id": "a", "event_id": "b", ...}`);
- about every `--kill-every` seconds a run worker of a run in progress (a child of the daemon's code server)
  is killed with SIGKILL.

Then kills and drops stop, one last clean file per day lands, and the script waits until that file reached a
successful run of each day and the queue is empty. It reports:

- events landed (records in the readable files, repeated-key lines included) against accepted + quarantined
  + duplicates as the lake and the latest materialization of each day show them: they must balance exactly;
  unreadable files dropped against `unreadable_file` quarantine rows and files set aside;
- runs: succeeded, failed, run workers killed, killed days recovered (a later successful run of the day);
- pool slots still claimed at the end (leaked: must be 0);
- debris left by crashed writers, by the names the janitor documents, and how much of it is older than the
  grace period (`--grace-seconds`, the janitor's default of one hour).

It only reads what the pipeline publishes (the lake, the instance's runs and materializations) and kills only
processes of the daemon it started.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import _common

REPO = _common.REPO
POOLS = ("duckdb_warehouse", "mlflow_registry")
POISON_KINDS = ("random_parquet", "repeated_key", "truncated_gzip", "text_named_gz", "truncated_parquet")
AGENTS = [f"agent_{i}" for i in range(6)]
TASKS = ["analysis", "coding", "search", "compliance_analysis"]
_ATOMIC_TMP = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")


@dataclass
class Landed:
    files: int = 0
    records: int = 0  # records in readable files: each must end accepted, quarantined or a duplicate
    invalid: int = 0  # of which written invalid on purpose
    redelivered: int = 0  # of which copies of earlier events
    repeated_key_lines: int = 0
    poison: Counter = field(default_factory=Counter)
    event_ids: dict[str, list[str]] = field(default_factory=dict)  # day -> event ids landed (for re-delivery)


# -- landing files --------------------------------------------------------------------------------------
def _publish(landing: Path, name: str, data: bytes) -> None:
    tmp = landing / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, landing / name)


def _event(day: str, rng: random.Random) -> dict:
    now = datetime.now(UTC)
    if day == now.date().isoformat():
        ts = now - timedelta(seconds=rng.uniform(0, min(3600.0, now.hour * 3600 + now.minute * 60 + 1)))
    else:
        ts = datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(seconds=rng.uniform(0, 86_399))
    return {
        "event_id": str(uuid.uuid4()),
        "agent_name": rng.choice(AGENTS),
        "task_type": rng.choice(TASKS),
        "status": rng.choices(["success", "failure", "partial", "timeout"], [6, 2, 1, 1])[0],
        "latency_ms": round(rng.uniform(50, 3000), 1),
        "quality_score": round(rng.uniform(0, 1), 3),
        "timestamp": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "context": {"complexity": rng.choice(["low", "medium", "high"])},
    }


def _days() -> list[str]:
    today = datetime.now(UTC).date()
    return [today.isoformat(), (today - timedelta(days=1)).isoformat()]


def drop_good(landing: Path, landed: Landed, rng: random.Random, n: int, seq: int, day: str | None = None):
    day = day or rng.choices(_days(), [4, 1])[0]
    lines: list[str] = []
    for _ in range(n):
        r = rng.random()
        earlier = landed.event_ids.get(day)
        if r < 0.03 and earlier:  # a re-delivery of an event landed before
            lines.append(json.dumps({**_event(day, rng), "event_id": rng.choice(earlier)}))
            landed.redelivered += 1
        elif r < 0.05:  # invalid: unknown status or no agent
            bad = _event(day, rng)
            if rng.random() < 0.5:
                bad["status"] = "exploded"
            else:
                del bad["agent_name"]
            lines.append(json.dumps(bad))
            landed.invalid += 1
        else:
            event = _event(day, rng)
            landed.event_ids.setdefault(day, []).append(event["event_id"])
            lines.append(json.dumps(event))
    _publish(landing, f"soak-{seq:05d}.jsonl", ("\n".join(lines) + "\n").encode())
    landed.files += 1
    landed.records += n


def _parquet_bytes(rng: random.Random, n: int) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [_event(_days()[0], rng) for _ in range(n)]
    table = pa.Table.from_pylist([{**r, "context": json.dumps(r["context"])} for r in rows])
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def drop_poison(landing: Path, landed: Landed, rng: random.Random, kind: str, seq: int) -> None:
    if kind == "random_parquet":
        _publish(landing, f"soak-{seq:05d}.parquet", rng.randbytes(4096))
    elif kind == "truncated_parquet":
        data = _parquet_bytes(rng, 200)
        _publish(landing, f"soak-{seq:05d}.parquet", data[: len(data) // 2])
    elif kind == "truncated_gzip":
        lines = "\n".join(json.dumps(_event(_days()[0], rng)) for _ in range(300)) + "\n"
        data = gzip.compress(lines.encode())
        _publish(landing, f"soak-{seq:05d}.jsonl.gz", data[: len(data) // 2])
    elif kind == "text_named_gz":
        _publish(landing, f"soak-{seq:05d}.jsonl.gz", json.dumps(_event(_days()[0], rng)).encode() + b"\n")
    elif kind == "repeated_key":  # readable: every line is a record the documented rule decides
        day = _days()[0]
        lines = []
        for _ in range(20):
            event = _event(day, rng)
            body = json.dumps({k: v for k, v in event.items() if k != "event_id"})[1:]
            lines.append(f'{{"event_id": "{uuid.uuid4()}", "event_id": "{event["event_id"]}", {body}')
        _publish(landing, f"soak-{seq:05d}.jsonl", ("\n".join(lines) + "\n").encode())
        landed.files += 1
        landed.records += len(lines)
        landed.repeated_key_lines += len(lines)
    landed.poison[kind] += 1


# -- processes --------------------------------------------------------------------------------------------
def _proc_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, session id, command line) for every process we can read."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), int(fields[3]), cmd)
    return table


def run_workers(daemon_pid: int) -> list[int]:
    """Run workers of the daemon's runs: children of its code server (`dagster api grpc`), same session."""
    table = _proc_table()
    servers = {pid for pid, (_, sid, cmd) in table.items() if sid == daemon_pid and " api grpc" in cmd}
    return [
        pid
        for pid, (ppid, sid, cmd) in table.items()
        if sid == daemon_pid
        and ppid in servers
        and "multiprocessing" in cmd
        and "resource_tracker" not in cmd
    ]


# -- what the pipeline published ------------------------------------------------------------------------
def lake_counts(data: Path) -> dict:
    import pyarrow.parquet as pq

    def rows(table: str) -> list[dict]:
        out: list[dict] = []
        for path in sorted((data / "lake" / table).glob("event_date=*/*.parquet")):
            out += pq.read_table(path).to_pylist()
        return out

    accepted = rows("outcome_events")
    quarantined = rows("quarantined_events")
    reasons = Counter(r.get("reason") for r in quarantined)
    return {
        "accepted": len(accepted),
        "accepted_unique": len({r["event_id"] for r in accepted}),
        "quarantined_records": len(quarantined) - reasons.get("unreadable_file", 0),
        "unreadable_rows": reasons.get("unreadable_file", 0),
        "reasons": dict(reasons),
        "days": sorted(
            p.name.split("=", 1)[1] for p in (data / "lake" / "outcome_events").glob("event_date=*")
        ),
    }


def duplicates_by_day(instance, days: list[str]) -> dict[str, dict]:
    import dagster as dg

    out = {}
    for day in days:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("outcome_events"), asset_partitions=[day]), limit=1
        ).records
        if records:
            meta = records[0].asset_materialization.metadata
            out[day] = {
                k: meta[k].value for k in ("received", "accepted", "quarantined", "duplicates") if k in meta
            }
    return out


def debris(data: Path, grace_seconds: float) -> dict:
    now = time.time()
    found: list[tuple[str, int, float]] = []
    for base in ("landing", "staging", "lake"):
        root = data / base
        if not root.exists():
            continue
        for path in root.rglob(".*"):
            if ".unreadable" in path.parts:
                continue
            rel = path.relative_to(data)
            name = path.name
            is_debris = (
                (base == "staging" and (name.startswith(".tmp-") or name.startswith(".scratch-")))
                or bool(_ATOMIC_TMP.match(name))
                or (base == "landing" and name.startswith(".sdk-") and name.endswith(".tmp"))
            )
            if not is_debris or any(p.startswith((".tmp-", ".scratch-")) for p in rel.parts[:-1]):
                continue
            try:
                files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
                size = sum(p.stat().st_size for p in files)
                mtime = max([path.stat().st_mtime] + [p.stat().st_mtime for p in files])
            except FileNotFoundError:
                continue
            found.append((str(rel), size, now - mtime))
    old = [f for f in found if f[2] > grace_seconds]
    return {
        "entries": len(found),
        "bytes": sum(f[1] for f in found),
        "beyond_grace": len(old),
        "beyond_grace_bytes": sum(f[1] for f in old),
        "examples": [f[0] for f in found[:5]],
    }


def claimed_slots(instance) -> dict[str, list[str]]:
    out = {}
    for pool in POOLS:
        info = instance.event_log_storage.get_concurrency_info(pool)
        out[pool] = sorted({slot.run_id for slot in info.claimed_slots})
    return out


def failure_cause(instance, run_id: str) -> str:
    """'killed' when the code server saw the run worker end by SIGKILL ('killed while launching' when that
    happened before the run started), else the first line of the run's failure."""
    import dagster as dg

    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        if "signal 9" in (record.message or "") or "SIGKILL" in (record.message or ""):
            return "killed"
        error = getattr(record.dagster_event.event_specific_data, "error", None)
        if error is not None and "exit code -9" in error.message:
            return "killed while launching"
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE):
        data = record.dagster_event.event_specific_data
        error = getattr(data, "error", None)
        first = (error.message if error is not None else record.message or "").strip().splitlines()
        return (first[0] if first else "no message")[:160]
    return "no failure event"


# -- main ---------------------------------------------------------------------------------------------------
def main() -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument(
        "--interval", type=float, default=4.0, help="seconds between landing drops (jittered)"
    )
    parser.add_argument("--events", type=int, default=200, help="events per good file (jittered +-50 %%)")
    parser.add_argument("--poison-every", type=int, default=10, help="one drop in this many is poison")
    parser.add_argument("--kill-every", type=float, default=30.0, help="mean seconds between run kills")
    parser.add_argument("--drain-timeout", type=float, default=900.0, help="seconds to wait for the backlog")
    parser.add_argument("--grace-seconds", type=float, default=3600.0, help="the janitor's grace period")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    root = Path(tempfile.mkdtemp(prefix="soak-"))
    home, data = root / "home", root / "data"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    landing = data / "landing"
    landing.mkdir(parents=True)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "LEARNING_PIPELINE_DATA_DIR": str(data),
        "LEARNING_PIPELINE_LANDING_SENSOR_SECONDS": os.environ.get(
            "LEARNING_PIPELINE_LANDING_SENSOR_SECONDS", "5"
        ),
    }
    os.environ["DAGSTER_HOME"] = str(home)

    import dagster as dg

    started = time.time()
    landed = Landed()
    kills: list[tuple[float, int]] = []
    with dg.DagsterInstance.get() as instance:
        instance.get_runs(limit=1)  # create the sqlite storage before the daemon opens it
        log = open(root / "daemon.log", "wb")
        daemon = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            print(f"soak for {args.minutes:g} min in {root} (daemon pid {daemon.pid})", flush=True)
            end = time.monotonic() + args.minutes * 60
            next_drop = time.monotonic()
            next_kill = time.monotonic() + rng.expovariate(1 / args.kill_every)
            seq = 0
            poison_turn = 0
            next_sample = time.monotonic()
            queued_samples: list[int] = []
            while time.monotonic() < end:
                now = time.monotonic()
                if now >= next_sample:
                    queued = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]))
                    queued_samples.append(len(queued))
                    next_sample = now + 10
                if now >= next_drop:
                    seq += 1
                    if seq % args.poison_every == 0:
                        drop_poison(landing, landed, rng, POISON_KINDS[poison_turn % len(POISON_KINDS)], seq)
                        poison_turn += 1
                    else:
                        n = max(1, int(args.events * rng.uniform(0.5, 1.5)))
                        drop_good(landing, landed, rng, n, seq)
                    next_drop = now + args.interval * rng.uniform(0.5, 1.5)
                if now >= next_kill:
                    workers = run_workers(daemon.pid)
                    if workers:
                        time.sleep(rng.uniform(0, 1.0))  # somewhere in the run
                        victim = rng.choice(workers)
                        try:
                            os.kill(victim, signal.SIGKILL)
                            kills.append((time.time(), victim))
                            print(f"  {time.time() - started:6.0f} s  killed run worker {victim}", flush=True)
                        except ProcessLookupError:
                            pass
                        next_kill = now + rng.expovariate(1 / args.kill_every)
                    else:
                        next_kill = now + 0.5  # no run in progress: try again shortly
                time.sleep(0.2)
                if daemon.poll() is not None:
                    print("the daemon exited; see daemon.log")
                    break

            # Drain: one clean file per day after the last kill, then wait for a successful run of each day
            # created after it, and an empty queue.
            last_drop = time.time()
            for day in _days():
                seq += 1
                drop_good(landing, landed, rng, 50, seq, day=day)
            print(f"  {time.time() - started:6.0f} s  drops stopped; draining", flush=True)
            deadline = time.monotonic() + args.drain_timeout
            drained = False
            while time.monotonic() < deadline:
                succeeded_days = {
                    run.tags.get("dagster/partition")
                    for run in instance.get_runs(
                        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS])
                    )
                    if run.job_name == "landing_job"
                    and (instance.get_run_record_by_id(run.run_id).create_timestamp.timestamp() > last_drop)
                }
                if set(_days()) <= succeeded_days and not _common.unfinished_runs(instance):
                    drained = True
                    break
                time.sleep(2)
            drain_seconds = time.time() - last_drop
            # Slots of dead runs are freed by the run-monitoring daemon a little after the run ended.
            slots_deadline = time.monotonic() + 60
            slots = claimed_slots(instance)
            while any(slots.values()) and time.monotonic() < slots_deadline:
                time.sleep(2)
                slots = claimed_slots(instance)

            runs = instance.get_runs()
            status = Counter(run.status.value for run in runs)
            by_job = Counter((run.job_name, run.status.value) for run in runs)
            failed = [r for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
            causes = Counter(failure_cause(instance, r.run_id) for r in failed)
            records = {r.run_id: instance.get_run_record_by_id(r.run_id) for r in runs}
            recovered = 0
            for run in failed:
                day = run.tags.get("dagster/partition")
                t = records[run.run_id].create_timestamp
                if any(
                    other.status == dg.DagsterRunStatus.SUCCESS
                    and other.job_name == run.job_name
                    and other.tags.get("dagster/partition") == day
                    and records[other.run_id].create_timestamp > t
                    for other in runs
                ):
                    recovered += 1
            counts = lake_counts(data)
            dups = duplicates_by_day(instance, counts["days"])
        finally:
            try:
                os.killpg(daemon.pid, signal.SIGTERM)
                daemon.wait(30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
            try:
                os.killpg(daemon.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            log.close()

    duplicates = sum(d.get("duplicates", 0) for d in dups.values())
    balance = counts["accepted"] + counts["quarantined_records"] + duplicates
    unreadable_dropped = sum(v for k, v in landed.poison.items() if k != "repeated_key")
    set_aside = (
        len([p for p in (landing / ".unreadable").glob("*") if p.is_file()])
        if (landing / ".unreadable").exists()
        else 0
    )
    junk = debris(data, args.grace_seconds)
    leaked = sum(len(v) for v in slots.values())

    print()
    print(f"soak {args.minutes:g} min, seed {args.seed}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {root}")
    print(
        f"drops: {landed.files + unreadable_dropped} files ({landed.files} readable, {unreadable_dropped} unreadable), "
        f"poison by kind {dict(landed.poison)}"
    )
    print(
        f"events landed {landed.records} (invalid on purpose {landed.invalid}, re-delivered {landed.redelivered}, "
        f"repeated-key lines {landed.repeated_key_lines})"
    )
    print(
        f"  accepted {counts['accepted']} + quarantined {counts['quarantined_records']} + duplicates {duplicates} "
        f"= {balance}  -> {'BALANCED' if balance == landed.records else f'OFF BY {landed.records - balance:+d}'}"
    )
    print(f"  quarantine reasons {counts['reasons']}; per day (latest materialization) {dups}")
    print(
        f"unreadable files: dropped {unreadable_dropped}, unreadable_file rows {counts['unreadable_rows']}, "
        f"set aside in landing/.unreadable {set_aside}"
    )
    print(f"runs: {dict(status)}; by job {dict(by_job)}")
    print(
        f"  run workers killed {len(kills)}; failed runs {len(failed)}, of which recovered "
        f"(a later successful run of the same job and day) {recovered}; causes {dict(causes)}"
    )
    if queued_samples:
        print(f"  runs queued (sampled every 10 s): max {max(queued_samples)}, last {queued_samples[-1]}")
    print(f"  drained: {drained} ({drain_seconds:.0f} s after the last drop)")
    print(f"slots still claimed at the end: {leaked} {slots if leaked else ''}")
    print(
        f"debris: {junk['entries']} entries, {junk['bytes'] / 1e6:.2f} MB; beyond the {args.grace_seconds:.0f} s "
        f"grace: {junk['beyond_grace']} ({junk['beyond_grace_bytes'] / 1e6:.2f} MB) {junk['examples']}"
    )
    ok = balance == landed.records and leaked == 0 and drained and junk["beyond_grace"] == 0
    return _common.finish(root, ok, args.keep)


if __name__ == "__main__":
    sys.exit(main())
