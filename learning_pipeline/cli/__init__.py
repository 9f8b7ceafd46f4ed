"""The `learning-pipeline` command: one module per group of subcommands, `main` builds the parser."""

from learning_pipeline.cli.main import main

__all__ = ["main"]
