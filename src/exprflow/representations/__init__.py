"""Representations: how a cell's expression becomes the state a generative model sees."""

from exprflow.representations.base import REPRESENTATIONS
from exprflow.representations.count_latent import CountLatent
from exprflow.representations.counts import COUNT_SAMPLERS, log1p_to_counts
from exprflow.representations.gaussian import GaussianPCA
from exprflow.representations.scvi_latent import ScviLatent
from exprflow.representations.library import LogNormalLibrary
from exprflow.representations.state_vector import StateVector, StateVectorConfig, log_normalise

__all__ = ["COUNT_SAMPLERS", "REPRESENTATIONS", "CountLatent", "GaussianPCA", "ScviLatent", "LogNormalLibrary", "StateVector", "StateVectorConfig", "log1p_to_counts", "log_normalise"]
