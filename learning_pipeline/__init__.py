"""learning_pipeline: a Dagster asset pipeline that closes the learning loop of multi-agent LLM systems."""
