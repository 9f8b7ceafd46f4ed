"""Evaluated routing policies: candidate, off-policy evaluation, eval gate, MLflow registry, rollback."""
