"""`learning-pipeline alerts` and `learning-pipeline graduation` subcommands."""

from __future__ import annotations

import argparse
import json
import os

import pandas as pd

from learning_pipeline.cli.common import add_data_dir


def _paths(args):
    from learning_pipeline.lib.storage.lake import LakePaths

    return LakePaths.at(args.data_dir).ensure()


def _tracking_uri(args) -> str:

    from learning_pipeline.lib.learning import registry

    return (
        args.tracking_uri
        or os.environ.get("MLFLOW_TRACKING_URI")
        or registry.default_tracking_uri(args.data_dir)
    )


def _print(frame: pd.DataFrame, as_json: bool) -> None:
    if as_json:
        print(frame.to_json(orient="records", date_format="iso"))
    elif frame.empty:
        print("(none)")
    else:
        print(frame.to_string(index=False))


# -- alerts --------------------------------------------------------------------------------------
def cmd_alerts(args: argparse.Namespace) -> int:
    from learning_pipeline.lib.autonomy.alerts import AlertStore

    store = AlertStore(_paths(args))
    if args.action == "ack":
        if not args.id:
            raise ValueError("alerts ack needs an alert ID")
        row = store.acknowledge(args.id, args.by)
        print(f"acknowledged {row['id']} ({row['alert_type']}: {row['title']}) by {row['acknowledged_by']}")
        return 0
    frame = store.list(include_acknowledged=args.all, alert_type=args.type)
    cols = [
        "id",
        "created_at",
        "severity",
        "alert_type",
        "title",
        "agent_name",
        "model_version",
        "acknowledged",
    ]
    _print(frame[cols] if not args.json else frame, args.json)
    return 0


def add_alerts(subparsers) -> None:
    p = subparsers.add_parser("alerts", help="list alerts (open ones by default) or acknowledge one")
    p.add_argument("action", nargs="?", choices=["list", "ack"], default="list")
    p.add_argument("id", nargs="?", help="alert ID (for ack)")
    p.add_argument("--by", default="cli", help="who acknowledges (for ack)")
    p.add_argument("--all", action="store_true", help="include acknowledged alerts")
    p.add_argument("--type", help="only this alert type")
    p.add_argument("--json", action="store_true")
    add_data_dir(p)
    p.set_defaults(func=cmd_alerts)


# -- graduation ----------------------------------------------------------------------------------
def cmd_graduation(args: argparse.Namespace) -> int:
    from learning_pipeline.lib.autonomy import graduation
    from learning_pipeline.lib.autonomy import operations as autonomy_ops

    paths, uri = _paths(args), _tracking_uri(args)
    if args.action == "status":
        frame = autonomy_ops.status_frame(paths, uri)
        _print(frame, args.json)
        if not args.json:
            events = graduation.read_graduation_events(paths)
            if not events.empty:
                print("\ntransitions:")
                print(
                    events[["at", "version", "from_stage", "to_stage", "triggered_by", "reason"]].to_string(
                        index=False
                    )
                )
        return 0
    if args.version is None:
        raise ValueError(f"graduation {args.action} needs a VERSION")
    if not args.by or not args.reason:
        raise ValueError(f"graduation {args.action} needs --by NAME and --reason TEXT")
    action = {
        "approve": autonomy_ops.approve_live,
        "approve-candidate": autonomy_ops.approve_candidate,
        "canary": autonomy_ops.start_canary,
        "demote": autonomy_ops.demote,
    }[args.action]
    rec = action(paths, uri, args.version, args.by, args.reason)
    print(
        json.dumps(
            {k: (str(v) if not isinstance(v, (int, float, str, type(None))) else v) for k, v in rec.items()}
        )
    )
    return 0


def add_graduation(subparsers) -> None:
    p = subparsers.add_parser(
        "graduation",
        help="version stages (candidate -> approved -> shadow -> canary -> live -> retired): approve a pending "
        "candidate, start a canary from shadow, approve a shadow or canary version for live, or demote one stage",
    )
    p.add_argument(
        "action",
        nargs="?",
        choices=["status", "approve", "approve-candidate", "canary", "demote"],
        default="status",
    )
    p.add_argument("version", nargs="?", type=int)
    p.add_argument("--by", help="who decides")
    p.add_argument("--reason", help="why")
    p.add_argument(
        "--tracking-uri",
        default="",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite under the data dir)",
    )
    p.add_argument("--json", action="store_true")
    add_data_dir(p)
    p.set_defaults(func=cmd_graduation)


def cmd_autonomy_demo(args) -> int:
    from learning_pipeline.cli.autonomy_demo import AutonomyDemoSettings, run_autonomy_demo

    run_autonomy_demo(
        AutonomyDemoSettings(
            data_dir=args.data_dir,
            dagster_home=args.dagster_home,
            days=args.days,
            events_per_day=args.events_per_day,
            switch_day=args.switch_day,
            auto_approve=not args.manual_approval,
        )
    )
    return 0


def add_autonomy_demo(subparsers) -> None:
    p = subparsers.add_parser(
        "autonomy-demo",
        help="the autonomous loop (sensor, cycles, graduation, alerts) over "
        "a simulated timeline with a change of the best agents",
    )
    add_data_dir(p)
    p.add_argument("--dagster-home", default=os.environ.get("DAGSTER_HOME", ".dagster_home"))
    p.add_argument("--days", type=int, default=10)
    p.add_argument("--events-per-day", type=int, default=1500)
    p.add_argument("--switch-day", type=int, default=7)
    p.add_argument(
        "--manual-approval", action="store_true", help="auto-approval off: versions wait for a person"
    )
    p.set_defaults(func=cmd_autonomy_demo)


# -- settings ------------------------------------------------------------------------------------
def _parse_assignment(text: str) -> tuple[str, object]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise ValueError(f"expected NAME=VALUE, got {text!r}")
    if raw in ("", "default"):
        return name, None  # back to the default
    try:
        return name, json.loads(raw)
    except ValueError:
        return name, raw


def cmd_settings(args: argparse.Namespace) -> int:
    from learning_pipeline.defs.autonomy.resources import default_autonomy_resource
    from learning_pipeline.lib.autonomy.settings import SettingsStore

    store, defaults = SettingsStore(_paths(args)), default_autonomy_resource().settings_defaults()
    if args.action == "history":
        _print(store.history(), args.json)
        return 0
    if args.action == "set":
        if not args.by or not args.reason:
            raise ValueError("settings set needs --by NAME and --reason TEXT")
        changes = dict(_parse_assignment(a) for a in args.assignments)
        records = store.change(changes, args.by, args.reason, defaults)
        print(json.dumps(records, default=str))
        return 0
    overrides = store.overrides()
    frame = pd.DataFrame(
        [
            {"setting": k, "value": overrides.get(k, v), "default": v, "overridden": k in overrides}
            for k, v in defaults.items()
        ]
    )
    _print(frame, args.json)
    return 0


def add_settings(subparsers) -> None:
    p = subparsers.add_parser(
        "settings",
        help="the loop's run-time settings: show, set NAME=VALUE ... (NAME=default resets), history",
    )
    p.add_argument("action", nargs="?", choices=["show", "set", "history"], default="show")
    p.add_argument("assignments", nargs="*", help="NAME=VALUE (JSON values: true, 500, 0.02)")
    p.add_argument("--by", help="who changes them")
    p.add_argument("--reason", help="why")
    p.add_argument("--json", action="store_true")
    add_data_dir(p)
    p.set_defaults(func=cmd_settings)
