"""Likelihoods by name: which decoder heads each needs and how it builds its distribution.

A decoder always produces the mean ``mu``; it adds a gene-wise inverse dispersion ``theta`` when
``needs_dispersion`` and per-cell, per-gene dropout logits when ``needs_dropout``::

    lik = LIKELIHOODS.get("zinb")
    dist = lik.build(mu, theta, zi_logits)     # -> ZeroInflatedNegativeBinomial
    nll = -dist.log_prob(counts).sum(-1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor
from torch.distributions import Distribution

from exprflow.distributions.counts import NegativeBinomial, PoissonCounts, ZeroInflatedNegativeBinomial
from exprflow.registry import Registry


@dataclass(frozen=True)
class CountLikelihood:
    """A named count likelihood and the decoder heads it needs."""

    name: str
    needs_dispersion: bool
    needs_dropout: bool
    factory: Callable[..., Distribution]

    def build(self, mu: Tensor, theta: Tensor | None = None, zi_logits: Tensor | None = None) -> Distribution:
        """The distribution for decoder outputs (``theta``/``zi_logits`` only where the likelihood uses them)."""
        args = [mu]
        if self.needs_dispersion:
            args.append(theta)
        if self.needs_dropout:
            args.append(zi_logits)
        if any(a is None for a in args):
            raise ValueError(f"likelihood {self.name!r} needs mu{', theta' * self.needs_dispersion}"
                             f"{', zi_logits' * self.needs_dropout}")
        return self.factory(*args, validate_args=False)


LIKELIHOODS: Registry[CountLikelihood] = Registry("likelihood")
for _lik in (
    CountLikelihood("nb", needs_dispersion=True, needs_dropout=False, factory=NegativeBinomial),
    CountLikelihood("zinb", needs_dispersion=True, needs_dropout=True, factory=ZeroInflatedNegativeBinomial),
    CountLikelihood("poisson", needs_dispersion=False, needs_dropout=False, factory=PoissonCounts),
):
    LIKELIHOODS.register(_lik.name)(_lik)
