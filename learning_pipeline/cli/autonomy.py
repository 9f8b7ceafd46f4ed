"""`learning-pipeline alerts` and `learning-pipeline graduation` subcommands."""

from __future__ import annotations

import argparse
import json
import os

import pandas as pd

from learning_pipeline.cli import common


def _paths(args):
    from learning_pipeline.lib.storage.lake import LakePaths

    return LakePaths.at(common.existing_data_dir(args))


def _tracking_uri(args) -> str:
    from learning_pipeline.lib.learning import registry

    return (
        args.tracking_uri
        or os.environ.get("MLFLOW_TRACKING_URI")
        or registry.default_tracking_uri(args.data_dir)
    )


# -- alerts --------------------------------------------------------------------------------------
ALERT_COLUMNS = ["id", "created_at", "severity", "alert_type", "title", "agent_name", "model_version"]


def cmd_alerts(args: argparse.Namespace) -> int:
    from learning_pipeline.lib.autonomy.alerts import AlertStore

    store = AlertStore(_paths(args))
    if args.action == "ack":
        if not args.id or not args.by:
            raise ValueError("alerts ack needs an alert ID and --by NAME (who acknowledges, recorded)")
        row = store.acknowledge(args.id, args.by)
        sentence = (
            f"acknowledged {row['id']} ({row['alert_type']}: {row['title']}) by {row['acknowledged_by']}"
        )
        common.print_result(row, sentence, args.json)
        return 0
    frame = store.list(include_acknowledged=args.all, alert_type=args.type)
    if not args.json:
        frame = frame[ALERT_COLUMNS + (["acknowledged"] if args.all else [])]
        frame["created_at"] = frame["created_at"].map(lambda t: f"{t:%Y-%m-%d %H:%M}")
    common.print_table(frame, args.json, empty="no open alerts" if not args.all else "no alerts")
    return 0


def add_alerts(subparsers) -> None:
    from learning_pipeline.lib.autonomy.alerts import ALERT_TYPES

    p = common.add_parser(
        subparsers, "alerts", "list alerts (open ones by default) or acknowledge one: ack ID --by NAME"
    )
    p.add_argument("action", nargs="?", choices=["list", "ack"], default="list")
    p.add_argument("id", nargs="?", help="alert ID (for ack)")
    p.add_argument("--by", help="who acknowledges (for ack, recorded)")
    p.add_argument("--all", action="store_true", help="include acknowledged alerts")
    p.add_argument("--type", choices=ALERT_TYPES, help="only this alert type")
    common.add_json(p)
    common.add_data_dir(p)
    p.set_defaults(func=cmd_alerts)


# -- graduation ----------------------------------------------------------------------------------
def _stage_label(row) -> str:
    """One state per version: its stage, and for a candidate whether it waits for a person's approval."""
    return f"{row.stage} (pending approval)" if row.approval == "pending_approval" else row.stage


def _transition_sentence(version: int, rec: dict) -> str:
    if "to_stage" in rec:
        change = f"{rec.get('from_stage') or 'candidate'} -> {rec['to_stage']}"
        who = rec["triggered_by"]
    else:
        change, who = rec["decision"], rec["decided_by"]
    return f"agent-router v{version}: {change} by {who} ({rec['reason']})"


def cmd_graduation(args: argparse.Namespace) -> int:
    from learning_pipeline.lib.autonomy import graduation
    from learning_pipeline.lib.autonomy import operations as autonomy_ops

    paths, uri = _paths(args), _tracking_uri(args)
    if args.action == "status":
        frame = autonomy_ops.status_frame(paths, uri)
        if args.json:
            common.print_table(frame, True)
            return 0
        table = pd.DataFrame(
            {
                "version": frame["version_number"],
                "stage": [_stage_label(row) for row in frame.itertuples()],
                "gate": frame["gate"],
                "improvement": frame["improvement"],
                "aliases": frame["aliases"],
            }
        )
        common.print_table(table, False, empty="no registered versions")
        events = graduation.read_graduation_events(paths)
        if not events.empty:
            print("\ntransitions:")
            events["at"] = events["at"].map(lambda t: f"{t:%Y-%m-%d %H:%M}")
            common.print_table(
                events[["at", "version", "from_stage", "to_stage", "triggered_by", "reason"]], False
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
    common.print_result(rec, _transition_sentence(args.version, rec), args.json)
    return 0


def add_graduation(subparsers) -> None:
    p = common.add_parser(
        subparsers,
        "graduation",
        "version stages (candidate -> approved -> shadow -> canary -> live -> retired): status; approve a "
        "pending candidate, start a canary from shadow, approve a shadow or canary version for live, or demote "
        "one stage (VERSION --by NAME --reason TEXT)",
    )
    p.add_argument(
        "action",
        nargs="?",
        choices=["status", "approve", "approve-candidate", "canary", "demote"],
        default="status",
    )
    p.add_argument("version", nargs="?", type=common.positive, help="registered version (not for status)")
    p.add_argument("--by", help="who decides (recorded)")
    p.add_argument("--reason", help="why (recorded)")
    p.add_argument(
        "--tracking-uri",
        default="",
        help="MLflow tracking URI ($MLFLOW_TRACKING_URI, else sqlite under the data dir)",
    )
    common.add_json(p)
    common.add_data_dir(p)
    p.set_defaults(func=cmd_graduation)


def cmd_autonomy_demo(args) -> int:
    from learning_pipeline.cli.autonomy_demo import AutonomyDemoSettings, run_autonomy_demo

    if args.switch_day >= args.days:
        raise ValueError(f"--switch-day {args.switch_day} is not within the {args.days} simulated days")
    run_autonomy_demo(AutonomyDemoSettings.from_args(args))
    return 0


def add_autonomy_demo(subparsers) -> None:
    p = common.add_parser(
        subparsers,
        "autonomy-demo",
        "the autonomous loop (sensor, cycles, graduation, alerts) over a simulated timeline with a change of the "
        "best agents",
    )
    common.add_data_dir(p)
    common.add_dagster_home(p)
    p.add_argument("--days", type=_at_least_five, default=10, help="simulated days (at least 5)")
    p.add_argument("--events-per-day", type=common.positive, default=1500, help="events per simulated day")
    p.add_argument(
        "--switch-day",
        type=common.non_negative,
        default=7,
        help="day index (0 = first) the best agents change",
    )
    p.add_argument(
        "--manual-approval",
        action="store_false",
        dest="auto_approve",
        help="auto-approval off: versions wait for a person",
    )
    p.set_defaults(func=cmd_autonomy_demo)


def _at_least_five(value: str) -> int:
    days = common.positive(value)
    if days < 5:
        raise argparse.ArgumentTypeError("at least 5 days: cycles start on day 4 and need a held-out day")
    return days


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
        common.print_table(store.history(), args.json, empty="no settings changed yet")
        return 0
    if args.action == "set":
        if not args.by or not args.reason:
            raise ValueError("settings set needs --by NAME and --reason TEXT")
        changes = dict(_parse_assignment(a) for a in args.assignments)
        records = store.change(changes, args.by, args.reason, defaults)
        lines = [f"{r['name']}: {r['old_value']} -> {r['new_value']} (by {r['by']})" for r in records]
        common.print_result(records, "\n".join(lines) or "nothing changed", args.json)
        return 0
    overrides = store.overrides()
    frame = pd.DataFrame(
        [
            {"setting": k, "value": overrides.get(k, v), "default": v, "overridden": k in overrides}
            for k, v in defaults.items()
        ]
    )
    common.print_table(frame, args.json)
    return 0


def add_settings(subparsers) -> None:
    p = common.add_parser(
        subparsers,
        "settings",
        "the loop's run-time settings: show, set NAME=VALUE ... --by NAME --reason TEXT (NAME=default resets), "
        "history",
    )
    p.add_argument("action", nargs="?", choices=["show", "set", "history"], default="show")
    p.add_argument("assignments", nargs="*", help="NAME=VALUE (JSON values: true, 500, 0.02)")
    p.add_argument("--by", help="who changes them (recorded)")
    p.add_argument("--reason", help="why (recorded)")
    common.add_json(p)
    common.add_data_dir(p)
    p.set_defaults(func=cmd_settings)
