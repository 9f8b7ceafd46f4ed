"""Ingestion benchmark: JSONL landing files -> validated, de-duplicated, daily-partitioned Parquet.

    python benchmarks/bench_ingest.py --events 1000000 3000000 [--malformed-share 0]

For each volume, a child process generates the events with the simulator (10 days, 100k lines per file,
1% re-deliveries, 0.1% malformed records by default, which puts bad lines in every file; 0 gives clean
files), then measures, in a fresh child process each:
  baseline   DuckDB alone: read_json over all landing files -> one Parquet file, no validation
  pipeline   what `outcome_events` does: staging (each landing file read once, its records checked and split by
             event date) + de-duplication (within the day and against the days in the window) and publishing
             of every day
and prints events/s (wall clock and per CPU-second, which is steadier on a shared machine), the peak resident
memory of the measuring process, and the pipeline's rates as a share of the baseline's from the same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb

from learning_pipeline.lib.events.staging import StagingRules, log_snapshot, stage_pending
from learning_pipeline.lib.events.validation import validate_partition
from learning_pipeline.lib.simulation.simulate import SimulationConfig, write_simulation
from learning_pipeline.lib.storage.lake import LakePaths
from learning_pipeline.lib.storage.warehouse import sql_literal

DAYS = 10


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def generate(data_dir: str, events: int, malformed_share: float) -> dict:
    config = SimulationConfig(
        days=DAYS,
        events_per_day=events // DAYS,
        seed=1,
        malformed_share=malformed_share,
        duplicate_share=0.01,
        propensities=True,
        file_events=100_000,
    )
    return write_simulation(config, data_dir).summary()


def baseline(data_dir: str) -> dict:
    paths = LakePaths.at(data_dir)
    out = Path(data_dir) / "baseline.parquet"
    start, cpu = time.perf_counter(), cpu_seconds()
    with duckdb.connect() as con:
        rows = con.execute(
            f"COPY (SELECT * FROM read_json({sql_literal(str(paths.landing / '*.jsonl'))}, format = 'newline_delimited', "
            "ignore_errors = true, union_by_name = true)) TO " + sql_literal(str(out)) + " (FORMAT parquet)"
        ).fetchone()[0]
    return {
        "seconds": time.perf_counter() - start,
        "cpu": cpu_seconds() - cpu,
        "rows": rows,
        "peak_rss_mb": peak_rss_mb(),
    }


def pipeline(data_dir: str) -> dict:
    paths = LakePaths.at(data_dir).ensure()
    rules = StagingRules(first_date=date(2000, 1, 1))
    start, cpu = time.perf_counter(), cpu_seconds()
    stage_pending(paths, rules)
    staged_at, staged_cpu = time.perf_counter(), cpu_seconds()
    snapshot = log_snapshot(paths)
    totals = {"received": 0, "accepted": 0, "quarantined": 0, "duplicates": 0}
    for day in sorted(snapshot.days()):
        with duckdb.connect() as con:  # one connection per day, as each run of the asset has
            counts = validate_partition(
                con,
                snapshot.files_for(paths, day),
                rules,
                paths.partition_dir("outcome_events", day) / "data.parquet",
                paths.partition_dir("quarantined_events", day) / "data.parquet",
                neighbor_files=snapshot.neighbor_files(paths, day, rules.dedup_window_days),
                staging_seq=snapshot.seq,
                staging_log=snapshot.log_id,
            )
        for key in totals:
            totals[key] += getattr(counts, key)
    end = time.perf_counter()
    return {
        "seconds": end - start,
        "cpu": cpu_seconds() - cpu,
        "staging_seconds": staged_at - start,
        "staging_cpu": staged_cpu - cpu,
        "validation_seconds": end - staged_at,
        "validation_cpu": cpu_seconds() - staged_cpu,
        **totals,
        "peak_rss_mb": peak_rss_mb(),
    }


def child(step: str, data_dir: str, events: int, malformed_share: float) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            step,
            "--data-dir",
            data_dir,
            "--events",
            str(events),
            "--malformed-share",
            str(malformed_share),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000])
    parser.add_argument(
        "--malformed-share",
        type=float,
        default=0.001,
        help="bad records per event; 0.001 puts bad lines in every file, 0 gives clean files",
    )
    parser.add_argument("--child")
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    if args.child:
        result = {"generate": generate, "baseline": baseline, "pipeline": pipeline}[args.child](
            *(
                [args.data_dir, args.events[0], args.malformed_share]
                if args.child == "generate"
                else [args.data_dir]
            )
        )
        print(json.dumps(result))
        return

    print(
        f"{'events':>11} {'step':<9} {'wall s':>7} {'cpu s':>7} {'events/s':>10} {'ev/cpu-s':>9} {'peak MB':>8}  notes"
    )
    for events in args.events:
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
            gen = child("generate", tmp, events, args.malformed_share)
            lines = gen["lines"]
            measured = {}
            for step in ("baseline", "pipeline"):
                r = measured[step] = child(step, tmp, events, args.malformed_share)
                notes = ""
                if step == "pipeline":
                    base = measured["baseline"]
                    notes = (
                        f"{base['seconds'] / r['seconds']:.2f} of the baseline's rate (wall), "
                        f"{base['cpu'] / r['cpu']:.2f} per CPU-second; "
                        f"staging {r['staging_seconds']:.1f}s ({r['staging_cpu']:.1f} CPU s), "
                        f"validation {r['validation_seconds']:.1f}s ({r['validation_cpu']:.1f} CPU s); "
                        f"accepted {r['accepted']}, quarantined {r['quarantined']}, duplicates {r['duplicates']}, "
                        f"received {r['received']} of {lines} lines"
                    )
                print(
                    f"{events:>11} {step:<9} {r['seconds']:>7.1f} {r['cpu']:>7.1f} {lines / r['seconds']:>10,.0f} "
                    f"{lines / r['cpu']:>9,.0f} {r['peak_rss_mb']:>8.0f}  {notes}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
