"""The backbone contract.

A backbone is an ``nn.Module`` with::

    forward(x: Tensor[B, *shape], t: Tensor[B], cond: Tensor[B] (long) | None) -> Tensor[B, *shape]

- ``x`` is the state (for the state-vector flow ``shape == (dim,)``); the output has the same shape
  (a velocity for flows).
- ``t`` is flow time in [0, 1] (float, one per sample).
- ``cond`` holds integer condition codes in ``[0, n_conditions)``; the code ``n_conditions`` is the
  *null* condition used by classifier-free guidance. ``None`` means unconditional (null code).

Backbones never import an objective; objectives never import a concrete backbone. Every backbone is
constructed from keyword arguments ``(dim, n_conditions, **hyperparameters)`` and registered in
:data:`exprflow.backbones.registry.BACKBONES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
import scipy.sparse as sp
from torch import Tensor


@runtime_checkable
class Backbone(Protocol):
    """Structural type of every backbone (see module docstring)."""

    dim: int
    n_conditions: int

    def __call__(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor: ...


@dataclass(frozen=True)
class GeneContext:
    """What a gene-aware backbone may learn from the training data before training starts.

    Passed once to ``backbone.setup_genes(context)`` by models whose state is gene space (StateFlow),
    never at load time: whatever a backbone derives from it (a gene order, per-gene statistics, gene
    embeddings keyed by name) must live in its buffers or parameters, so it is saved with the weights.

    Attributes:
        var_names: gene names in the order of the state vector's coordinates.
        var: the AnnData's ``var`` table (read only; never modified), same row order.
        counts: raw counts of the TRAIN cells, CSR, cells x genes.
        encode: the model's representation, counts -> state vectors (the backbone's input space).
        log1p_mean, log1p_std: per-gene standardisation of the state, ``x = (log1p_value - mean) / std``
            (None: the state is log1p-normalised expression itself).
        target_sum: the per-cell normalisation total behind the log1p values (``None`` for non-counts).
    """

    var_names: list[str]
    var: pd.DataFrame
    counts: sp.csr_matrix
    encode: Callable[[sp.csr_matrix], Tensor]
    log1p_mean: np.ndarray | None = None
    log1p_std: np.ndarray | None = None
    target_sum: float | None = 1e4


@runtime_checkable
class GeneAware(Protocol):
    """A backbone that reads :class:`GeneContext` once before training (e.g. to fix a gene order)."""

    def setup_genes(self, context: GeneContext) -> None: ...
