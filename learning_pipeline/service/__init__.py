"""The HTTP decision and control API (FastAPI): agent selection, metrics, alerts, graduation."""
