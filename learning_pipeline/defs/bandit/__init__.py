"""Bandit: Beta posteriors per (task_type, agent, context bucket) and top-k recommendations."""
