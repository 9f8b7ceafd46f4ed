"""The loop without a person: continuous learning, approvals, graduation, alerts."""
