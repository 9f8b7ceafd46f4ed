"""Seeded synthetic event streams with a known ground truth, for the demo, tests and benchmarks."""
