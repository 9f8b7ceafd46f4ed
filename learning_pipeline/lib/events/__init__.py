"""Outcome events: the schema, staging of landing files, vectorized validation, PII redaction."""
