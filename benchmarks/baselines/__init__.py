"""Baseline generators scored beside exprflow's models in the benchmark tables."""
