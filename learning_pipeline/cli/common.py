"""Argument helpers shared by the subcommands, and the one output style: sentences or aligned tables for a
person, `--json` for scripts."""

from __future__ import annotations

import argparse
import json
import os
import sys

import pandas as pd

from learning_pipeline.lib.storage.lake import DATA_DIR_ENV


class CommandError(RuntimeError):
    """A failure the user can act on: `learning-pipeline` prints its message as one line, no stack trace."""


def default_data_dir() -> str:
    return os.environ.get(DATA_DIR_ENV, "data")


class _ShowDefaults(argparse.HelpFormatter):
    """--help shows each option's default, unless it has none (None) or is an off switch (False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and action.option_strings:
            text += " (default: %(default)s)"
        return text


def add_parser(subparsers, name: str, help: str, **kwargs) -> argparse.ArgumentParser:
    return subparsers.add_parser(name, help=help, description=help, formatter_class=_ShowDefaults, **kwargs)


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=default_data_dir(),
        help=f"data directory (${DATA_DIR_ENV} sets the default)",
    )


def add_json(parser: argparse.ArgumentParser, what: str = "the result") -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON (for scripts)")


def add_dagster_home(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dagster-home",
        default=os.environ.get("DAGSTER_HOME", ".dagster_home"),
        help="Dagster instance directory ($DAGSTER_HOME sets the default)",
    )


def existing_data_dir(args: argparse.Namespace) -> str:
    """A command that reads or changes what the pipeline wrote refuses a data directory that does not exist,
    instead of creating an empty one (a mistyped --data-dir)."""
    if not os.path.isdir(args.data_dir):
        raise ValueError(
            f"data directory {args.data_dir} does not exist: pass the one `learning-pipeline demo` or the "
            f"pipeline wrote (--data-dir or ${DATA_DIR_ENV})"
        )
    return args.data_dir


def _number(value: str, kind: type, minimum: float, inclusive: bool = True):
    try:
        number = kind(value)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}") from None
    if number < minimum or (not inclusive and number == minimum):
        raise argparse.ArgumentTypeError(f"must be {'>=' if inclusive else '>'} {minimum}, got {value}")
    return number


def positive(value: str) -> int:
    return _number(value, int, 1)


def non_negative(value: str) -> int:
    return _number(value, int, 0)


def seconds(value: str) -> float:
    return _number(value, float, 0, inclusive=False)


def share(value: str) -> float:
    number = _number(value, float, 0)
    if number > 1:
        raise argparse.ArgumentTypeError(f"must be within [0, 1], got {value}")
    return number


def progress_printer(what: str, steps: int = 10):
    """A progress callback (done, total) for long work: prints '<what>: done of total (p%)' to stderr each time
    another 1/steps of the total is done (stdout keeps the result, and --json stays parseable)."""
    shown = -1

    def report(done: int, total: int) -> None:
        nonlocal shown
        step = steps * done // total if total else steps
        if step > shown:
            shown = step
            print(
                f"{what}: {done:,} of {total:,} ({100 * done // max(total, 1)}%)", file=sys.stderr, flush=True
            )

    return report


def _cell(value) -> object:
    """Missing values (None, NaN, NA, NaT) print as an empty cell, numbers with at most 4 decimals."""
    if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return round(value, 4)
    return value


def print_table(frame: pd.DataFrame, as_json: bool, empty: str = "(none)") -> None:
    if as_json:
        print(frame.to_json(orient="records", date_format="iso"))
    elif frame.empty:
        print(empty)
    else:
        print(frame.map(_cell).to_string(index=False))


def print_result(record: object, sentence: str, as_json: bool) -> None:
    """One result: a sentence for a person, the record as JSON for a script."""
    print(json.dumps(record, default=str) if as_json else sentence)
