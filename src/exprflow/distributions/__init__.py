"""Count likelihoods (NB, ZINB, Poisson) and the registry that picks one by name."""

from exprflow.distributions.counts import NegativeBinomial, PoissonCounts, ZeroInflatedNegativeBinomial
from exprflow.distributions.likelihoods import LIKELIHOODS, CountLikelihood

__all__ = ["LIKELIHOODS", "CountLikelihood", "NegativeBinomial", "PoissonCounts", "ZeroInflatedNegativeBinomial"]
