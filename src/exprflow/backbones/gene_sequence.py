"""Sequence backbones on the gene axis of a state vector: S4D, Hyena, Mamba and a Transformer.

A cell's state ``x in R^G`` is read as a sequence of gene *patches* in one fixed gene order::

    x (B, G) -> x[:, order] -> pad to L * P -> (B, L, P)            # P genes per position, L = ceil(G / P)
      -> patch_embed (P -> W) + position embedding (L, W)
      -> SequenceStack (depth adaLN-Zero blocks around the mixer; flow time + condition by adaLN)
      -> head (W -> P) per position -> (B, L * P)[:, :G] -> back to the state's gene order
      + low-rank per-gene skip  a(c) * x + b(c),  a, b = Linear(SiLU(c)) (B, K) @ basis (K, G)

The gene order is fixed and stored with the model (buffer ``gene_order``): the training order, or the
order of ``var`` columns named by ``gene_order_key`` (e.g. ``["chromosome", "start"]`` for genomic
position), never a per-cell ranking. With ``P = 16`` a 20,000-gene cell is a sequence of 1,250
positions, and the parameter count no longer grows as ``G x width`` (the MLP's first and last layers):
only the position embedding (``L x W``) and the low-rank skip basis (``2 K G``) depend on G.

The skip path plays the role of the MLP backbone's per-gene affine skip (the exact velocity of a
Gaussian coordinate is affine in it) at rank ``K`` instead of ``W`` per gene. It and the head are
zero-initialised, so a fresh backbone outputs the zero velocity.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from exprflow.backbones import ssm as _ssm  # noqa: F401  (registers the SSM mixers)
from exprflow.backbones import transformer as _attention  # noqa: F401  (registers "attention")
from exprflow.backbones.base import GeneContext
from exprflow.backbones.embeddings import ConditionEmbedding, TimeEmbedding, broadcast_time
from exprflow.backbones.registry import BACKBONES
from exprflow.backbones.sequence import SequenceStack
from exprflow.errors import ExprflowInputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GeneSequenceConfig:
    """Hyperparameters of a :class:`GeneSequenceBackbone` (saved in the model's config)."""

    dim: int
    n_conditions: int = 0
    width: int = 128
    depth: int = 4
    patch_size: int = 16
    mlp_ratio: float = 2.0
    time_dim: int = 128
    dropout: float = 0.0
    skip_rank: int = 16
    mixer_kwargs: dict = field(default_factory=dict)
    gene_order_key: str | list[str] | None = None


def genomic_order(var: pd.DataFrame, key: str | list[str]) -> np.ndarray:
    """Permutation sorting genes by the ``var`` column(s) ``key`` (stable; missing values last).

    Raises a clear error when a column is missing. Numeric columns sort numerically, others as text
    (chromosome names: give a numeric or ordered categorical column for natural order).
    """
    keys = [key] if isinstance(key, str) else list(key)
    missing = [k for k in keys if k not in var.columns]
    if missing:
        raise ExprflowInputError(
            f"gene_order_key names var column(s) {missing} that the AnnData does not have (columns: "
            f"{list(var.columns)[:10]}). Add the genomic position to adata.var or drop gene_order_key "
            "to keep the training gene order."
        )
    frame = pd.DataFrame({k: var[k].to_numpy() for k in keys})
    frame["_pos"] = np.arange(len(var))
    return frame.sort_values(keys + ["_pos"], kind="stable", na_position="last")["_pos"].to_numpy()


class GeneSequenceBackbone(nn.Module):
    """Velocity network over gene patches with a pluggable sequence mixer (see module docstring).

    Parameters
    ----------
    dim
        number of genes G of the state vector.
    n_conditions
        condition codes; code ``n_conditions`` is the null condition.
    width
        channels W of each position.
    depth
        number of adaLN-Zero blocks.
    patch_size
        genes per sequence position P.
    mlp_ratio, dropout
        the blocks' channel MLP.
    time_dim
        width of the sinusoidal flow-time code.
    skip_rank
        rank K of the per-gene skip path (0 disables it).
    mixer_kwargs
        options of the mixer (e.g. ``{"state_dim": 64}`` for S4D, ``{"scan": "chunked"}``
        for Mamba, ``{"n_heads": 4}`` for attention).
    gene_order_key
        ``var`` column(s) giving the gene order (genomic position); None = training order.
    """

    mixer: str = ""

    def __init__(self, dim: int, n_conditions: int = 0, width: int = 128, depth: int = 4, patch_size: int = 16,
                 mlp_ratio: float = 2.0, time_dim: int = 128, dropout: float = 0.0, skip_rank: int = 16,
                 mixer_kwargs: dict | None = None, gene_order_key: str | list[str] | None = None) -> None:
        super().__init__()
        self.config = GeneSequenceConfig(dim, n_conditions, width, depth, patch_size, mlp_ratio, time_dim,
                                         dropout, skip_rank, dict(mixer_kwargs or {}), gene_order_key)
        self.dim, self.n_conditions, self.patch_size = dim, n_conditions, patch_size
        self.length = math.ceil(dim / patch_size)
        self.register_buffer("gene_order", torch.arange(dim))
        self.register_buffer("gene_rank", torch.arange(dim))  # inverse permutation
        self.patch_embed = nn.Linear(patch_size, width)
        self.pos_embed = nn.Parameter(0.02 * torch.randn(self.length, width))
        self.time_embed = TimeEmbedding(width, freq_dim=time_dim)
        self.cond_embed = ConditionEmbedding(n_conditions, width)
        self.stack = SequenceStack(width, depth, self.mixer, causal=False, mlp_ratio=mlp_ratio, dropout=dropout,
                                   mixer_kwargs={self.mixer: dict(mixer_kwargs or {})})
        self.head = nn.Linear(width, patch_size)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.skip_modulation = nn.Linear(width, 2 * skip_rank) if skip_rank > 0 else None
        if self.skip_modulation is not None:
            nn.init.zeros_(self.skip_modulation.weight)
            nn.init.zeros_(self.skip_modulation.bias)
            self.skip_basis = nn.Parameter(torch.randn(2, skip_rank, dim) / math.sqrt(skip_rank))

    @classmethod
    def small_config(cls) -> dict:
        """Tiny hyperparameters for fast tests."""
        return {"width": 16, "depth": 2, "patch_size": 4, "time_dim": 16, "skip_rank": 2,
                "mixer_kwargs": cls.small_mixer_kwargs()}

    @classmethod
    def small_mixer_kwargs(cls) -> dict:
        return {}

    # ------------------------------------------------------------ gene order
    def set_gene_order(self, order: np.ndarray | Tensor) -> None:
        """Fix the gene order: ``order[i]`` is the state coordinate placed at sequence slot ``i``."""
        order = torch.as_tensor(np.asarray(order), dtype=torch.long)
        if order.shape != (self.dim,) or not torch.equal(torch.sort(order).values, torch.arange(self.dim)):
            raise ValueError(f"gene order must be a permutation of range({self.dim})")
        self.gene_order.copy_(order)
        self.gene_rank.copy_(torch.argsort(order))

    def setup_genes(self, context: GeneContext) -> None:
        """Take the gene order from ``var[gene_order_key]`` when given (else keep the training order)."""
        key = self.config.gene_order_key
        if key is None:
            return
        self.set_gene_order(genomic_order(context.var, key))
        logger.info("%s: genes ordered by var %s", type(self).__name__, key)

    # --------------------------------------------------------------- forward
    def forward(self, x: Tensor, t: Tensor | float, cond: Tensor | None = None) -> Tensor:
        """``x (B, G)``, ``t (B,)`` or scalar, ``cond (B,)`` long or None -> velocity ``(B, G)``."""
        batch = x.shape[0]
        t = broadcast_time(t, batch, x)
        codes = self.cond_embed.codes(cond, batch, x.device)
        c_act = F.silu(self.time_embed(t) + self.cond_embed(codes))  # (B, W)
        seq = x.index_select(1, self.gene_order)
        seq = F.pad(seq, (0, self.length * self.patch_size - self.dim))
        h = self.patch_embed(seq.reshape(batch, self.length, self.patch_size)) + self.pos_embed  # (B, L, W)
        h = self.stack(h, c_act)
        v = self.head(h).reshape(batch, -1)[:, : self.dim].index_select(1, self.gene_rank)  # (B, G)
        if self.skip_modulation is not None:
            m_a, m_b = self.skip_modulation(c_act).chunk(2, dim=-1)  # (B, K) each
            v = v + (m_a @ self.skip_basis[0]) * x + m_b @ self.skip_basis[1]
        return v

    def extra_repr(self) -> str:
        return f"mixer={self.mixer}, " + ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())


@BACKBONES.register("s4d")
class S4DBackbone(GeneSequenceBackbone):
    """S4D (diagonal SSM, FFT convolution, bidirectional) over gene patches."""

    mixer = "s4d"

    @classmethod
    def small_mixer_kwargs(cls) -> dict:
        return {"state_dim": 8}


@BACKBONES.register("hyena")
class HyenaBackbone(GeneSequenceBackbone):
    """Hyena (implicit long filters, gating, bidirectional) over gene patches."""

    mixer = "hyena"

    @classmethod
    def small_mixer_kwargs(cls) -> dict:
        return {"filter_width": 8, "emb_dim": 5}


@BACKBONES.register("mamba")
class MambaBackbone(GeneSequenceBackbone):
    """Bidirectional Mamba (selective SSM, chunked scan on CPU) over gene patches."""

    mixer = "mamba"

    @classmethod
    def small_mixer_kwargs(cls) -> dict:
        return {"state_dim": 4, "head_dim": 8, "chunk_size": 2}


@BACKBONES.register("transformer")
class TransformerBackbone(GeneSequenceBackbone):
    """Transformer encoder (bidirectional self-attention, learned positions) over gene patches."""

    mixer = "attention"

    @classmethod
    def small_mixer_kwargs(cls) -> dict:
        return {"n_heads": 2}
