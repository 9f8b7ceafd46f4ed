"""Pure logic of the pipeline, grouped by domain like `defs/`; nothing here imports Dagster.

events      the outcome event schema, staging of landing files, validation, PII redaction
ingest      ways in: the Kafka consumer and producer, the SDK's micro-batching recorder
storage     the lake layout and atomic writes, DuckDB views over it, the dbt-like SQL runner
bandit      Thompson sampling, off-policy estimators, the routing policy and its gate
learning    one learning cycle (train, evaluate, gate) and the MLflow registry
training    training data mined from traces: SFT pairs, routing pairs, agent configs
autonomy    continuous learning, approvals, graduation, alerts
simulation  seeded event streams with a known ground truth, for the demo, tests and benchmarks
"""
