"""Bandit math: Thompson sampling posteriors, off-policy estimators, the routing policy and its gate."""
