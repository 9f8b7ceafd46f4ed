"""Kafka ingestion: a sensor that drains the outcome topic into the landing zone."""
