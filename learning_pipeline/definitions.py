"""The one Definitions object of the code location: every domain's definitions, with shared resources."""

import dagster as dg

from learning_pipeline.defs.events.definitions import defs as events_defs
from learning_pipeline.defs.resources import default_lake_resource

defs = dg.Definitions.merge(
    events_defs,
    dg.Definitions(resources={"lake": default_lake_resource()}),
)
