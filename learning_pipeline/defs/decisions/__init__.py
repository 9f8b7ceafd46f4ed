"""Decisions: the served decisions of the decision service, validated per day like outcome events."""
