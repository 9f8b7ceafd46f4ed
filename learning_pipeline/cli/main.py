"""The `learning-pipeline` command. Each subcommand is one `add_<name>` function registering its parser."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

from learning_pipeline.cli.autonomy import add_alerts, add_autonomy_demo, add_graduation, add_settings
from learning_pipeline.cli.common import (
    CommandError,
    add_dagster_home,
    add_data_dir,
    add_json,
    add_parser,
    existing_data_dir,
    non_negative,
    positive,
    print_table,
    progress_printer,
    seconds,
    share,
)


# -- simulate ----------------------------------------------------------------------------------
def cmd_simulate(args: argparse.Namespace) -> int:
    from learning_pipeline.lib.simulation.simulate import SimulationConfig, write_simulation

    if args.switch_day is not None and args.switch_day >= args.days:
        raise ValueError(f"--switch-day {args.switch_day} is not within the {args.days} simulated days")

    config = SimulationConfig(
        days=args.days,
        events_per_day=args.events_per_day,
        seed=args.seed,
        end_date=args.end_date,
        propensities=args.propensities,
        malformed_share=args.malformed_share,
        duplicate_share=args.duplicate_share,
        switch_day=args.switch_day,
        file_events=args.file_events,
    )
    result = write_simulation(config, args.data_dir, progress=progress_printer("simulating events"))
    summary = result.summary()
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"wrote {summary['files']} files to {os.path.join(os.path.abspath(args.data_dir), 'landing')}")
    print(f"  events:      {summary['events']} valid ({config.start_date} .. {config.end_date})")
    print(f"  duplicates:  {summary['duplicates']} re-delivered copies")
    kinds = ", ".join(f"{k}={v}" for k, v in summary["bad_by_kind"].items()) or "none"
    print(f"  bad records: {summary['bad_records']} ({kinds})")
    print(f"  lines:       {summary['lines']} ({summary['bytes'] / 1e6:.1f} MB)")
    print(f"  truth:       {summary['truth_path']}")
    return 0


def add_simulate(subparsers) -> None:
    p = add_parser(subparsers, "simulate", "write simulated outcome events into the landing zone")
    add_data_dir(p)
    p.add_argument("--days", type=positive, default=14, help="simulated days")
    p.add_argument("--events-per-day", type=positive, default=2000, help="valid events per day")
    p.add_argument("--seed", type=int, default=0, help="random seed (the same seed writes the same events)")
    p.add_argument("--end-date", default=None, help="last simulated day, YYYY-MM-DD (default: today UTC)")
    p.add_argument(
        "--propensities", action="store_true", help="route by a logging policy and record propensities"
    )
    p.add_argument("--malformed-share", type=share, default=0.0, help="extra bad records, share of events")
    p.add_argument(
        "--duplicate-share", type=share, default=0.0, help="extra re-delivered copies, share of events"
    )
    p.add_argument(
        "--switch-day",
        type=non_negative,
        default=None,
        help="day index (0 = first day) the best agents change",
    )
    p.add_argument("--file-events", type=positive, default=100_000, help="max lines per landing file")
    add_json(p, "the summary")
    p.set_defaults(func=cmd_simulate)


# -- consume -----------------------------------------------------------------------------------
def cmd_consume(args: argparse.Namespace) -> int:
    import logging

    from learning_pipeline.lib.ingest.kafka_io import (
        BrokerUnreachableError,
        KafkaSettings,
        run_until_signalled,
    )
    from learning_pipeline.lib.storage.lake import LakePaths

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {
        key: value
        for key, value in (
            ("bootstrap_servers", args.bootstrap_servers),
            ("topic", args.topic),
            ("group_id", args.group),
            ("batch_size", args.batch_size),
            ("batch_timeout", args.batch_timeout),
            ("connect_timeout", args.connect_timeout),
        )
        if value is not None
    }
    settings = KafkaSettings.from_env(**overrides)
    landing = LakePaths.at(args.data_dir).ensure().landing
    print(
        f"consuming {settings.topic} from {settings.bootstrap_servers} (group {settings.group_id}) into {landing}; "
        "Ctrl-C or SIGTERM to stop",
        file=sys.stderr,
        flush=True,
    )
    try:
        result = run_until_signalled(settings, landing, max_batches=args.max_batches)
    except BrokerUnreachableError as exc:
        print(f"learning-pipeline consume: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_BROKER_UNREACHABLE
    summary = result.as_dict()
    print(json.dumps(summary) if args.json else " ".join(f"{k}={v}" for k, v in summary.items()), flush=True)
    return 0


# Exit status of `consume` when no broker answered within the connect timeout (sysexits EX_UNAVAILABLE), so
# a supervisor can tell it from a usage error (2).
EXIT_BROKER_UNREACHABLE = 69


def add_consume(subparsers) -> None:
    p = add_parser(
        subparsers,
        "consume",
        "consume outcome events from Kafka into the landing zone until SIGINT/SIGTERM (needs the kafka extra)",
    )
    add_data_dir(p)
    p.add_argument(
        "--bootstrap-servers", default=None, help="default: $KAFKA_BOOTSTRAP_SERVERS or localhost:9092"
    )
    p.add_argument("--topic", default=None, help="default: $KAFKA_OUTCOME_TOPIC or agent-outcomes")
    p.add_argument(
        "--group", default=None, help="consumer group (default: $KAFKA_CONSUMER_GROUP or learning-pipeline)"
    )
    p.add_argument(
        "--batch-size", type=positive, default=None, help="max messages per landed batch ($MODEL_BATCH_SIZE)"
    )
    p.add_argument(
        "--batch-timeout", type=seconds, default=None, help="max seconds per batch ($MODEL_BATCH_TIMEOUT)"
    )
    p.add_argument(
        "--connect-timeout",
        type=seconds,
        default=None,
        help="give up with one error (exit status 69) when no broker answers within this many seconds, at "
        "start or after losing all brokers ($KAFKA_CONNECT_TIMEOUT_SECONDS or 30)",
    )
    p.add_argument("--max-batches", type=positive, default=None, help="stop after this many batches")
    add_json(p, "the final counts")
    p.set_defaults(func=cmd_consume)


# -- demo --------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from learning_pipeline.cli.demo import DemoSettings, run_demo

    summary = run_demo(DemoSettings.from_args(args), echo=(lambda *_: None) if args.json else print)
    if args.json:
        print(json.dumps(summary, default=str))
    return 0


def _demo_days(value: str) -> int:
    days = positive(value)
    if days < 2:
        raise argparse.ArgumentTypeError(
            "at least 2 days: the learning cycle trains on the days before the last"
        )
    return days


def add_demo(subparsers) -> None:
    p = add_parser(subparsers, "demo", "simulate events and run the whole pipeline on a local instance")
    add_data_dir(p)
    add_dagster_home(p)
    p.add_argument("--days", type=_demo_days, default=7, help="simulated days (at least 2)")
    p.add_argument("--events-per-day", type=positive, default=5000, help="valid events per simulated day")
    p.add_argument("--seed", type=int, default=7, help="random seed of the simulation")
    add_json(p, "the summary (and nothing else)")
    p.set_defaults(func=cmd_demo)


# -- rollback ----------------------------------------------------------------------------------
def cmd_rollback(args: argparse.Namespace) -> int:
    from learning_pipeline.lib.autonomy.operations import rollback
    from learning_pipeline.lib.learning.registry import default_tracking_uri
    from learning_pipeline.lib.storage.lake import LakePaths

    paths = LakePaths.at(existing_data_dir(args))
    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(args.data_dir)
    info = rollback(paths, uri, args.version, args.by, args.reason, force=args.force)
    if args.json:
        print(json.dumps(info))
    else:
        print(f"@champion -> version {info['version']} (was {info['previous_champion']}): {info['reason']}")
    return 0


def add_rollback(subparsers) -> None:
    p = add_parser(
        subparsers,
        "rollback",
        "make an earlier agent-router version live again (@champion), recording who and why",
    )
    add_data_dir(p)
    p.add_argument("--version", type=positive, required=True, help="registered version to make champion")
    p.add_argument("--reason", required=True, help="why (recorded on the versions and in learning_events)")
    p.add_argument("--by", default=os.environ.get("USER", "cli"), help="who rolls back (recorded; $USER)")
    p.add_argument(
        "--force", action="store_true", help="allow a version the gate rejected or nobody approved (recorded)"
    )
    p.add_argument(
        "--tracking-uri", default=None, help="$MLFLOW_TRACKING_URI, else sqlite:///<data-dir>/mlflow.db"
    )
    add_json(p)
    p.set_defaults(func=cmd_rollback)


# -- sql ---------------------------------------------------------------------------------------
def cmd_sql(args: argparse.Namespace) -> int:
    import duckdb

    from learning_pipeline.lib.storage.lake import LakePaths
    from learning_pipeline.lib.storage.warehouse import lake_connection, table_names

    paths = LakePaths.at(existing_data_dir(args))
    with lake_connection(paths) as con:
        if args.query is None:
            print("\n".join(sorted(table_names(con))) or "no tables yet: run the pipeline first")
            return 0
        try:
            frame = con.execute(args.query).df()
        except duckdb.Error as error:
            raise ValueError(str(error).splitlines()[0]) from error
    print_table(frame, args.json, empty="(no rows)")
    return 0


def add_sql(subparsers) -> None:
    p = add_parser(
        subparsers,
        "sql",
        "query the lake with DuckDB SQL (views: outcome_events, agent_stats, agent_posteriors, ...); "
        "without a query, list the tables",
    )
    p.add_argument(
        "query", nargs="?", help='e.g. "SELECT agent_name, count(*) FROM outcome_events GROUP BY 1"'
    )
    add_data_dir(p)
    add_json(p, "the rows")
    p.set_defaults(func=cmd_sql)


# -- serve -------------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    from learning_pipeline.service.app import serve

    serve(
        args.data_dir,
        host=args.host,
        port=args.port,
        tracking_uri=args.tracking_uri or None,
        poll_seconds=args.poll_seconds,
        dagster_home=args.dagster_home or None,
        max_body_bytes=args.max_body_bytes,
        canary_share=args.canary_share,
    )
    return 0


def add_serve(subparsers) -> None:
    p = add_parser(subparsers, "serve", "run the Learning API (FastAPI on uvicorn)")
    add_data_dir(p)
    p.add_argument("--host", default="127.0.0.1", help="bind address")
    p.add_argument("--port", type=positive, default=8000, help="TCP port")
    p.add_argument(
        "--tracking-uri", default=None, help="$MLFLOW_TRACKING_URI, else sqlite:///<data-dir>/mlflow.db"
    )
    p.add_argument(
        "--poll-seconds",
        type=seconds,
        default=2.0,
        help="how often to check the @champion/@canary/@shadow aliases",
    )
    p.add_argument(
        "--canary-share", type=share, default=0.1, help="share of requests a version in canary serves"
    )
    p.add_argument(
        "--dagster-home", default=None, help="Dagster instance for sensor/schedule states ($DAGSTER_HOME)"
    )
    p.add_argument(
        "--max-body-bytes",
        type=positive,
        default=None,
        help="refuse request bodies larger than this with 413 "
        "(default: $LEARNING_PIPELINE_API_MAX_BODY_BYTES or 1048576)",
    )
    p.set_defaults(func=cmd_serve)


# Each entry registers one subcommand; new subcommands add one function here.

SUBCOMMANDS: list[Callable] = [
    add_demo,
    add_simulate,
    add_consume,
    add_rollback,
    add_alerts,
    add_graduation,
    add_autonomy_demo,
    add_serve,
    add_settings,
    add_sql,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="learning-pipeline", description="Close the learning loop of multi-agent LLM systems."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError, CommandError) as exc:
        print(f"learning-pipeline {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
