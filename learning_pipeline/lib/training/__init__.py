"""Training data mined from traces: SFT pairs, routing pairs, agent configuration recommendations."""
