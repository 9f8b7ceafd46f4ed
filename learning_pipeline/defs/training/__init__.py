"""Training data: SFT pairs, routing pairs and agent config recommendations mined from outcome events."""
