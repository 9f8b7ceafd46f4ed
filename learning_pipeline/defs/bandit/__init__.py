"""Bandit: Beta posteriors per (task_type, agent, context bucket) and top-k recommendations."""

from learning_pipeline.defs.bandit.definitions import defs

__all__ = ["defs"]
