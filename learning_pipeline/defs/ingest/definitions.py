import dagster as dg

from learning_pipeline.defs.ingest.sensors import kafka_ingest_sensor


# Resources are bound in learning_pipeline/definitions.py: "kafka" (default_kafka_resource()) and "lake".
@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(sensors=[kafka_ingest_sensor])
