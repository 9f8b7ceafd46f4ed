import dagster as dg

from learning_pipeline.defs.events.assets import ingest_job, outcome_events
from learning_pipeline.defs.events.sensors import landing_job, landing_zone_sensor, warehouse_views_sensor


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        assets=[outcome_events],
        jobs=[ingest_job, landing_job],
        sensors=[landing_zone_sensor, warehouse_views_sensor],
    )
