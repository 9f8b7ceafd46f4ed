"""The `learning-pipeline` command. Each subcommand is one `add_<name>` function registering its parser."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

from learning_pipeline.cli.autonomy import add_alerts, add_autonomy_demo, add_graduation, add_settings
from learning_pipeline.cli.common import add_data_dir, positive, share


# -- simulate ----------------------------------------------------------------------------------
def cmd_simulate(args: argparse.Namespace) -> int:
    from learning_pipeline.lib.simulation.simulate import SimulationConfig, write_simulation

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
    result = write_simulation(config, args.data_dir)
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
    p = subparsers.add_parser("simulate", help="write simulated outcome events into the landing zone")
    add_data_dir(p)
    p.add_argument("--days", type=positive, default=14)
    p.add_argument("--events-per-day", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--end-date", default=None, help="last simulated day, YYYY-MM-DD (default: today UTC)")
    p.add_argument(
        "--propensities", action="store_true", help="route by a logging policy and record propensities"
    )
    p.add_argument("--malformed-share", type=share, default=0.0, help="extra bad records, share of events")
    p.add_argument(
        "--duplicate-share", type=share, default=0.0, help="extra re-delivered copies, share of events"
    )
    p.add_argument(
        "--switch-day", type=int, default=None, help="day index (0 = first day) the best agents change"
    )
    p.add_argument("--file-events", type=positive, default=100_000, help="max lines per landing file")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
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


def _seconds(value: str) -> float:
    seconds = float(value)
    if not seconds > 0:
        raise argparse.ArgumentTypeError("must be > 0 seconds")
    return seconds


def add_consume(subparsers) -> None:
    p = subparsers.add_parser(
        "consume",
        help="consume outcome events from Kafka into the landing zone until SIGINT/SIGTERM (needs the kafka extra)",
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
        "--batch-timeout", type=float, default=None, help="max seconds per batch ($MODEL_BATCH_TIMEOUT)"
    )
    p.add_argument(
        "--connect-timeout",
        type=_seconds,
        default=None,
        help="give up with one error (exit status 69) when no broker answers within this many seconds, at "
        "start or after losing all brokers ($KAFKA_CONNECT_TIMEOUT_SECONDS or 30)",
    )
    p.add_argument("--max-batches", type=positive, default=None, help="stop after this many batches")
    p.add_argument("--json", action="store_true", help="print the final counts as JSON")
    p.set_defaults(func=cmd_consume)


# -- demo --------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from learning_pipeline.cli.demo import DemoSettings, run_demo

    run_demo(
        DemoSettings(
            data_dir=args.data_dir,
            dagster_home=args.dagster_home,
            days=args.days,
            events_per_day=args.events_per_day,
            seed=args.seed,
        )
    )
    return 0


def add_demo(subparsers) -> None:
    p = subparsers.add_parser("demo", help="simulate events and run the whole pipeline on a local instance")
    add_data_dir(p)
    p.add_argument(
        "--dagster-home",
        default=os.environ.get("DAGSTER_HOME", ".dagster_home"),
        help="Dagster instance directory (default: $DAGSTER_HOME or ./.dagster_home)",
    )
    p.add_argument("--days", type=positive, default=7)
    p.add_argument("--events-per-day", type=positive, default=5000)
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=cmd_demo)


# -- rollback ----------------------------------------------------------------------------------
def cmd_rollback(args: argparse.Namespace) -> int:
    from learning_pipeline.lib.autonomy.operations import rollback
    from learning_pipeline.lib.learning.registry import default_tracking_uri
    from learning_pipeline.lib.storage.lake import LakePaths

    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(args.data_dir)
    paths = LakePaths.at(args.data_dir).ensure()
    info = rollback(paths, uri, args.version, args.by, args.reason, force=args.force)
    if args.json:
        print(json.dumps(info))
    else:
        print(f"@champion -> version {info['version']} (was {info['previous_champion']}): {info['reason']}")
    return 0


def add_rollback(subparsers) -> None:
    p = subparsers.add_parser(
        "rollback", help="make an earlier agent-router version live again (@champion), recording who and why"
    )
    add_data_dir(p)
    p.add_argument("--version", type=positive, required=True, help="registered version to make champion")
    p.add_argument("--reason", required=True, help="why (recorded on the versions and in learning_events)")
    p.add_argument("--by", default=os.environ.get("USER", "cli"), help="who rolls back (default: $USER)")
    p.add_argument(
        "--force", action="store_true", help="allow a version the gate rejected or nobody approved (recorded)"
    )
    p.add_argument(
        "--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or sqlite:///<data-dir>/mlflow.db"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_rollback)


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
    p = subparsers.add_parser("serve", help="run the Learning API (FastAPI on uvicorn)")
    add_data_dir(p)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or sqlite:///<data-dir>/mlflow.db"
    )
    p.add_argument(
        "--poll-seconds",
        type=float,
        default=2.0,
        help="how often to check the @champion/@canary/@shadow aliases",
    )
    p.add_argument(
        "--canary-share", type=float, default=0.1, help="share of requests a version in canary serves (0.1)"
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
    except (ValueError, OSError) as exc:
        print(f"learning-pipeline {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
