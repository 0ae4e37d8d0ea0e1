"""Couplings of noise ``x0`` and data ``x1`` within a minibatch, chosen by name from :data:`COUPLINGS`.

A coupling returns ``x0`` reordered so that row ``i`` is paired with data row ``x1[i]``; the data (and
its condition codes) keep their order, so conditions stay attached to ``x1``.

- ``"independent"``: the identity (``x0`` and ``x1`` drawn independently).
- ``"ot"``: minibatch optimal transport (Tong et al., "Improving and generalizing flow-based generative
  models with minibatch optimal transport", 2024; Pooladian et al., 2023). An exact OT plan with uniform
  weights between two equal-size batches (``ot.emd`` on the squared Euclidean cost) is a permutation
  matrix scaled by ``1 / B``; the argmax of each row gives the partner. With condition codes, noise is
  coupled to data only within each condition (class-conditional OT).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import ot
import torch
from torch import Tensor

from exprflow.registry import Registry

logger = logging.getLogger(__name__)

COUPLINGS: Registry = Registry("coupling")


@COUPLINGS.register("independent")
@dataclass(frozen=True)
class IndependentCoupling:
    """Keep the independent pairing: returns ``x0`` unchanged."""

    def pair(self, x0: Tensor, x1: Tensor, cond: Tensor | None = None) -> Tensor:
        """Return ``x0`` (paired row by row with ``x1``)."""
        return x0


def ot_assignment(x0: Tensor, x1: Tensor, num_iter_max: int = 1_000_000) -> Tensor:
    """Exact OT assignment between equal-size batches: index ``j`` such that ``x0[j]`` pairs with ``x1``.

    Solves ``ot.emd`` with uniform weights on the cost ``M[i, k] = ||x1[i] - x0[k]||^2`` (rows: data);
    returns ``perm (B,)`` (long, on ``x0.device``) with ``x0[perm][i]`` the partner of ``x1[i]``.
    """
    n = x1.shape[0]
    if x0.shape[0] != n:
        raise ValueError(f"OT coupling needs equal batch sizes, got {x0.shape[0]} and {n}")
    if n == 1:
        return torch.zeros(1, dtype=torch.long, device=x0.device)
    a = x1.detach().reshape(n, -1).double().cpu().numpy()
    b = x0.detach().reshape(n, -1).double().cpu().numpy()
    # ||a_i - b_k||^2 = |a_i|^2 + |b_k|^2 - 2 a_i.b_k, one GEMM: (B data, B noise)
    cost = np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T), 0.0)
    weights = np.full(n, 1.0 / n)
    plan = ot.emd(weights, weights, cost, numItermax=num_iter_max)
    perm = torch.from_numpy(np.asarray(plan).argmax(axis=1))
    return perm.to(device=x0.device, dtype=torch.long)


@COUPLINGS.register("ot")
@dataclass(frozen=True)
class OTCoupling:
    """Minibatch exact OT (squared Euclidean cost); class-conditional when ``cond`` is given.

    The solve runs on CPU in float64 (``O(B^3)`` worst case; batches of a few hundred to a few thousand).
    """

    num_iter_max: int = 1_000_000

    def pair(self, x0: Tensor, x1: Tensor, cond: Tensor | None = None) -> Tensor:
        """Return ``x0`` reordered so that ``x0[i]`` is the OT partner of ``x1[i]`` (within its condition)."""
        if cond is None:
            return x0[ot_assignment(x0, x1, self.num_iter_max)]
        cond = cond.reshape(-1)
        out = torch.empty_like(x0)
        for code in torch.unique(cond):
            idx = (cond == code).nonzero(as_tuple=True)[0]
            perm = ot_assignment(x0[idx], x1[idx], self.num_iter_max)
            out[idx] = x0[idx][perm]
        logger.debug("class-conditional OT over %d conditions", int(torch.unique(cond).numel()))
        return out
