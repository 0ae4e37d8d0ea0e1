"""scGPT-style value-binned gene tokens as a flow backbone (Cui et al., 2024), a baseline.

Each gene's token is ``e_g + B[bin_g]``: its gene embedding plus the embedding of its value bin, where
``bin_g`` is 0 for an undetected gene and ``1 .. n_bins - 1`` (51 bins) from the cell's own quantiles
of its nonzero values (:func:`exprflow.representations.tokens.value_bins_torch`). No positional
encoding: the tokens go through the Set Transformer blocks (full self-attention, ``attention="sab"``,
as in scGPT; ``"isab"`` for large panels) and the same per-gene head and PMA cell embedding as
:class:`~exprflow.backbones.sets.set_transformer.SetTransformerBackbone`.

Bins quantise the state; the flow's velocity needs its exact value, so by default
(``value_channel=True``) the token also carries ``V(u_g)``; ``value_channel=False`` is the pure scGPT
input.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from exprflow.backbones.registry import BACKBONES
from exprflow.backbones.sets.genes import DETECTION_THRESHOLD
from exprflow.backbones.sets.set_transformer import SetTransformerBackbone
from exprflow.representations.tokens import SCGPT_N_BINS, value_bins_torch


@BACKBONES.register("value_bins")
class ValueBinsBackbone(SetTransformerBackbone):
    """scGPT value-bin tokens + Set Transformer blocks (no positions); see the module docstring.

    Parameters
    ----------
    n_bins
        number of bins including the zero bin (scGPT: 51).
    value_channel
        add the continuous value encoding to each token.
    attention
        ``"sab"`` (default, as scGPT) or ``"isab"``.
    dim, n_conditions, hidden, depth, heads, n_inducing, mlp_ratio, time_dim, value_encoding
        as in :class:`~exprflow.backbones.sets.set_transformer.SetTransformerBackbone`.
    """

    def __init__(self, dim: int, n_conditions: int = 0, hidden: int = 64, depth: int = 2, heads: int = 4,
                 attention: str = "sab", n_inducing: int = 16, n_bins: int = SCGPT_N_BINS,
                 value_channel: bool = True, mlp_ratio: float = 2.0, time_dim: int = 64,
                 value_encoding: str = "fourier") -> None:
        super().__init__(dim, n_conditions, hidden, depth, heads, attention, n_inducing, mlp_ratio, time_dim,
                         value_encoding)
        self.n_bins = n_bins
        self.value_channel = value_channel
        self.bin_embed = nn.Embedding(n_bins, hidden)
        nn.init.normal_(self.bin_embed.weight, std=0.02)

    @classmethod
    def small_config(cls) -> dict:
        """Tiny hyperparameters for fast tests."""
        return {"hidden": 16, "depth": 1, "heads": 2, "time_dim": 16}

    def tokens(self, u: Tensor, ids: Tensor) -> Tensor:
        detected = torch.where(u > DETECTION_THRESHOLD, u, torch.zeros_like(u))
        bins = value_bins_torch(detected.detach(), self.n_bins)  # (B, n) long
        tok = self.genes.embedding(ids) + self.bin_embed(bins)
        return tok + self.genes.value(u) if self.value_channel else tok
