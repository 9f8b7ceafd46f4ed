"""Seeded synthetic event streams with a known ground truth, for the demo, tests and benchmarks.

- `config.py`    what to simulate (`SimulationConfig`), default agents, task types, contexts, bad-record kinds
- `truth.py`     the ground truth of a configuration (`SimulationTruth`): success probabilities, best agents,
                 logging policy, true policy values
- `events.py`    vectorized event generation: typed tables (`generate_table`, `iter_day_tables`) and JSON lines
- `simulate.py`  writing: JSONL landing files and truth.json (`write_simulation`), lake Parquet (`write_lake`)

Import from the package: `from learning_pipeline.lib.simulation import SimulationConfig, generate_table`.
"""

from learning_pipeline.lib.simulation.config import (
    BAD_RECORD_KINDS,
    DEFAULT_TASK_TYPES,
    OVERSIZED_KIND,
    SEED_EXAMPLE_EVENTS,
    SimulationConfig,
)
from learning_pipeline.lib.simulation.events import generate_table
from learning_pipeline.lib.simulation.simulate import load_truth, write_lake, write_simulation
from learning_pipeline.lib.simulation.truth import SimulationTruth

__all__ = [
    "BAD_RECORD_KINDS",
    "DEFAULT_TASK_TYPES",
    "OVERSIZED_KIND",
    "SEED_EXAMPLE_EVENTS",
    "SimulationConfig",
    "SimulationTruth",
    "generate_table",
    "load_truth",
    "write_lake",
    "write_simulation",
]
