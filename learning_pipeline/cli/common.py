"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import os

from learning_pipeline.lib.storage.lake import DATA_DIR_ENV


def default_data_dir() -> str:
    return os.environ.get(DATA_DIR_ENV, "data")


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=default_data_dir(),
        help=f"data directory (default: ${DATA_DIR_ENV} or ./data)",
    )


def share(value: str) -> float:
    share = float(value)
    if not 0 <= share <= 1:
        raise argparse.ArgumentTypeError("must be within [0, 1]")
    return share


def positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return number
