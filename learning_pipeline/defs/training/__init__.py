"""Training data: SFT pairs, routing pairs and agent config recommendations mined from outcome events."""

from learning_pipeline.defs.training.definitions import defs

__all__ = ["defs"]
