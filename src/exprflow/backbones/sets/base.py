"""Shared frame of the gene-set backbones (DeepSets, Set Transformer, rank tokens, value bins).

Every one of them reads the state as a set of gene entities and writes one velocity per gene::

    u = x * scale + loc                                  # back to log1p values (identity without genes)
    tokens = e_g + V(u_g)                                # GeneEntityEncoder, (B, n, hidden)
    z (B, n, hidden), cell (B, hidden) = encode(tokens)  # the architecture: per-gene states + pooled cell
    v_g = Linear(adaLN(z_g, c))                          # GeneHead, zero-initialised: v = 0 at start

with ``c = SiLU(TimeEmbedding(t) + ConditionEmbedding(cond))``. ``cell`` is the invariant cell
embedding returned by :meth:`GeneSetBackbone.embed` (for latent flow and linear probes).

A subclass implements ``encode(tokens, u, ids, c_act)``. ``gene_ids`` (rows of the model's table, from
:meth:`GeneSetBackbone.match_genes`) lets a model read a panel that is a subset or reordering of its
own; ``x`` then has one column per entry of ``gene_ids``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch.nn.functional as F
from torch import Tensor, nn

from exprflow.backbones.base import GeneContext
from exprflow.backbones.embeddings import ConditionEmbedding, TimeEmbedding, broadcast_time
from exprflow.backbones.mlp import _modulate
from exprflow.backbones.sets.genes import GeneEntityEncoder, GeneMatch

logger = logging.getLogger(__name__)

_LN_EPS = 1e-6


class GeneHead(nn.Module):
    """Per-gene read-out ``(B, n, hidden) -> (B, n)``: adaptive LayerNorm from ``c``, then a linear map to
    one number. Both the modulation and the output layer are zero-initialised (adaLN-Zero)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.modulation = nn.Linear(hidden, 2 * hidden)
        self.out = nn.Linear(hidden, 1)
        for layer in (self.modulation, self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, z: Tensor, c_act: Tensor) -> Tensor:
        shift, scale = self.modulation(c_act).unsqueeze(1).chunk(2, dim=-1)  # (B, 1, hidden) each
        h = _modulate(F.layer_norm(z, z.shape[-1:], eps=_LN_EPS), shift, scale)
        return self.out(h).squeeze(-1)


def standardisation_of(context: GeneContext) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(loc, scale)`` with ``u = x * scale + loc`` (log1p values from the state); ``(None, None)`` = identity."""
    if context.log1p_mean is None or context.log1p_std is None:
        return None, None
    return np.asarray(context.log1p_mean, dtype=np.float32), np.asarray(context.log1p_std, dtype=np.float32)


def target_sum_of(context: GeneContext, default: float = 1e4) -> float:
    """The library-size normalisation target behind the state's log1p values."""
    return float(default if context.target_sum is None else context.target_sum)


class GeneSetBackbone(nn.Module):
    """Base of the gene-set backbones (see module docstring); not registered itself.

    Parameters
    ----------
    dim
        number of genes (state width).
    n_conditions
        number of condition codes; code ``n_conditions`` is the null condition.
    hidden
        token and conditioning width.
    time_dim
        width of the sinusoidal time code.
    value_encoding
        ``"fourier"`` or ``"linear"`` encoding of log1p values.
    """

    def __init__(self, dim: int, n_conditions: int = 0, hidden: int = 64, time_dim: int = 64,
                 value_encoding: str = "fourier") -> None:
        super().__init__()
        self.dim = dim
        self.n_conditions = n_conditions
        self.hidden = hidden
        self.genes = GeneEntityEncoder(dim, hidden, value_encoding)
        self.time_embed = TimeEmbedding(hidden, freq_dim=time_dim)
        self.cond_embed = ConditionEmbedding(n_conditions, hidden)
        self.head = GeneHead(hidden)

    #: activations (floats) one generation chunk may hold per token layer: cells x genes x hidden
    ACTIVATION_BUDGET = 2**23

    @property
    def generate_batch_size(self) -> int:
        """Cells per generation chunk: every cell holds ``dim x hidden`` activations per layer."""
        return max(8, self.ACTIVATION_BUDGET // (self.dim * self.hidden))

    # --------------------------------------------------------------------- genes
    def setup_genes(self, context: GeneContext) -> None:
        """Key gene embeddings by name and store the standardisation (buffers, saved with the weights)."""
        loc, scale = standardisation_of(context)
        self.genes.setup(context.var_names, loc, scale)

    def match_genes(self, names: Sequence[str], on_unknown: str = "raise") -> GeneMatch:
        """Map another panel's gene names to this model's rows (``gene_ids=match.model_index``)."""
        return self.genes.match(names, on_unknown)

    # ---------------------------------------------------------------- interface
    def conditioning(self, t: Tensor | float, cond: Tensor | None, like: Tensor) -> Tensor:
        """``SiLU(TimeEmbedding(t) + ConditionEmbedding(cond))`` per sample, ``(B, hidden)``."""
        batch = like.shape[0]
        codes = self.cond_embed.codes(cond, batch, like.device)
        return F.silu(self.time_embed(broadcast_time(t, batch, like)) + self.cond_embed(codes))

    def tokens(self, u: Tensor, ids: Tensor) -> Tensor:
        """Gene tokens ``(B, n, hidden)`` of log1p values ``u (B, n)``; subclasses may change the value code."""
        return self.genes(u, ids)

    def encode(self, tokens: Tensor, u: Tensor, ids: Tensor, c_act: Tensor) -> tuple[Tensor, Tensor]:
        """``tokens (B, n, hidden)`` -> per-gene states ``(B, n, hidden)`` and cell embedding ``(B, hidden)``."""
        raise NotImplementedError

    def _prepare(self, x: Tensor, t: Tensor | float, cond: Tensor | None, gene_ids: Tensor | None):
        """The panel's rows ``ids``, log1p values ``u (B, n)`` and conditioning ``c_act (B, hidden)``."""
        ids = self.genes.ids(gene_ids, x.device)
        if x.shape[1] != ids.shape[0]:
            raise ValueError(f"x has {x.shape[1]} columns for a panel of {ids.shape[0]} genes")
        return ids, self.genes.to_log1p(x, ids), self.conditioning(t, cond, x)

    def _run(self, x: Tensor, t: Tensor | float, cond: Tensor | None, gene_ids: Tensor | None):
        ids, u, c_act = self._prepare(x, t, cond, gene_ids)
        z, cell = self.encode(self.tokens(u, ids), u, ids, c_act)
        return z, cell, c_act

    def forward(self, x: Tensor, t: Tensor | float, cond: Tensor | None = None,
                gene_ids: Tensor | None = None) -> Tensor:
        """``x (B, n)`` standardised state, ``t (B,)`` or scalar, ``cond (B,)`` or None -> ``v (B, n)``."""
        z, _, c_act = self._run(x, t, cond, gene_ids)
        return self.head(z, c_act)

    def embed(self, x: Tensor, t: Tensor | float | None = None, cond: Tensor | None = None,
              gene_ids: Tensor | None = None) -> Tensor:
        """Pooled cell embedding ``(B, hidden)`` of states ``x (B, n)``; ``t`` defaults to 1 (the data end)."""
        return self._run(x, 1.0 if t is None else t, cond, gene_ids)[1]
