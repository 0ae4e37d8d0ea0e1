"""Representations: how a cell's expression becomes the state a generative model sees."""

from exprflow.representations.counts import COUNT_SAMPLERS, log1p_to_counts
from exprflow.representations.library import LogNormalLibrary
from exprflow.representations.state_vector import StateVector, StateVectorConfig, log_normalise

__all__ = ["COUNT_SAMPLERS", "LogNormalLibrary", "StateVector", "StateVectorConfig", "log1p_to_counts", "log_normalise"]
