"""Autonomy: approvals, graduation, alerts, and the schedules and sensors that run the loop."""
