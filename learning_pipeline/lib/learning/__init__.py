"""One learning cycle (train a candidate, evaluate it offline, gate it) and the MLflow registry."""
