"""Cells as tokens: a velocity field over a whole population of cells (seed section 7).

A population of ``N`` cells in a latent space of width ``d`` is a *set* of tokens: there is no order
between cells, so the backbone uses self-attention without any positional encoding and is
permutation-equivariant over cells (permuting the input cells permutes the output velocities)::

    x (B, N, d) -> input_proj (d -> W)                                   one token per cell
      -> SequenceStack(attention, no positions): depth adaLN-Zero blocks, modulated by
         c = TimeEmbedding(t) + ConditionEmbedding(cond)   (one flow time and one population
         condition, e.g. ctrl/stim or a sample, per population; broadcast over its cells)
      -> output_proj (W -> d), zero-initialised: a fresh backbone outputs the zero velocity
    v (B, N, d)

Attention lets each cell's velocity depend on the rest of its population, so the flow can learn
population-level structure (composition, shared shifts) that independent per-cell flows cannot.
A ``(B, d)`` input is read as ``B`` populations of one cell (the backbone contract of
:mod:`exprflow.backbones.base`), which makes the backbone a per-cell model usable anywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from exprflow.backbones import transformer as _attention  # noqa: F401  (registers the "attention" mixer)
from exprflow.backbones.embeddings import ConditionEmbedding, TimeEmbedding, broadcast_time
from exprflow.backbones.registry import BACKBONES
from exprflow.backbones.sequence import SequenceStack


@dataclass(frozen=True)
class CellSetConfig:
    """Hyperparameters of :class:`CellSetBackbone`."""

    dim: int
    n_conditions: int = 0
    width: int = 128
    depth: int = 3
    n_heads: int = 4
    mlp_ratio: float = 2.0
    time_dim: int = 128
    dropout: float = 0.0


@BACKBONES.register("cell_set")
class CellSetBackbone(nn.Module):
    """Velocity ``v(x, t, cond)`` of a population ``x (B, N, d)``: attention over cells, no positions.

    Parameters
    ----------
    dim
        width ``d`` of one cell's state (e.g. VAE latent dimensions + log library).
    n_conditions
        number of population conditions; code ``n_conditions`` is the null condition.
    width
        token width ``W``.
    depth
        attention blocks.
    n_heads
        attention heads.
    mlp_ratio, time_dim, dropout
        as in the other backbones.
    """

    def __init__(self, dim: int, n_conditions: int = 0, width: int = 128, depth: int = 3, n_heads: int = 4,
                 mlp_ratio: float = 2.0, time_dim: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
        self.config = CellSetConfig(dim, n_conditions, width, depth, n_heads, mlp_ratio, time_dim, dropout)
        self.dim = dim
        self.n_conditions = n_conditions
        self.input_proj = nn.Linear(dim, width)
        self.time_embed = TimeEmbedding(width, freq_dim=time_dim)
        self.cond_embed = ConditionEmbedding(n_conditions, width)
        self.stack = SequenceStack(width, depth, "attention", causal=False, mlp_ratio=mlp_ratio, dropout=dropout,
                                   mixer_kwargs={"attention": {"n_heads": n_heads}})
        self.output_proj = nn.Linear(width, dim)
        nn.init.zeros_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    @classmethod
    def small_config(cls) -> dict:
        """Tiny hyperparameters for fast tests."""
        return {"width": 32, "depth": 2, "n_heads": 2, "time_dim": 16}

    def forward(self, x: Tensor, t: Tensor | float, cond: Tensor | None = None) -> Tensor:
        """``x (B, N, d)`` (or ``(B, d)``: one cell each), ``t (B,)`` or scalar, ``cond (B,)`` -> like ``x``."""
        single = x.ndim == 2
        h = x[:, None, :] if single else x  # (B, N, d)
        batch = h.shape[0]
        t = broadcast_time(t, batch, x)
        codes = self.cond_embed.codes(cond, batch, x.device)
        c_act = F.silu(self.time_embed(t) + self.cond_embed(codes))  # (B, W): one per population
        v = self.output_proj(self.stack(self.input_proj(h), c_act))  # (B, N, W) -> (B, N, d)
        return v[:, 0] if single else v

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())
