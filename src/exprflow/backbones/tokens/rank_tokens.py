"""Geneformer-style rank-value tokens as a flow backbone (Theodoris et al., 2023), a baseline.

Each cell becomes the sequence of its detected genes ranked by ``normalised / median_g`` (median_g: the
gene's nonzero median over the TRAIN cells, fitted in :meth:`RankTokensBackbone.setup_genes`), top
``max_tokens`` (2,048), each token ``e_g + P_rank`` (gene embedding plus a learned POSITIONAL embedding
of its rank), then a Transformer (SAB blocks; positions carry the ranks)::

    u -> score, detected -> order (B, L) = rank_order(...)            # exprflow.representations.tokens
    seq = e[order] + P[:L] (+ V(u[order]) if value_channel)           # (B, L, hidden)
    S = Transformer(seq, c);  cell = masked mean of S                 # Geneformer's cell embedding
    z_g = e_g + V(u_g) + [S - seq at g's rank, if g is a token] + W cell;  v_g = GeneHead(z_g, c)

Rank tokens keep only the order of genes. A velocity field must also know the current values (the
state moves continuously from noise to data), so by default (``value_channel=True``) each token also
carries its value encoding, and genes outside the sequence still get a velocity from their own
``e_g + V(u_g)`` and the cell embedding. ``value_channel=False`` gives the pure rank-value tokens.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from exprflow.backbones.base import GeneContext
from exprflow.backbones.registry import BACKBONES
from exprflow.backbones.sets.attention import SAB
from exprflow.backbones.sets.base import GeneSetBackbone, target_sum_of
from exprflow.backbones.sets.genes import DETECTION_THRESHOLD
from exprflow.representations.tokens import GENEFORMER_MAX_TOKENS, nonzero_medians, rank_order


@BACKBONES.register("rank_tokens")
class RankTokensBackbone(GeneSetBackbone):
    """Rank-value token Transformer (Geneformer baseline); see the module docstring.

    Parameters
    ----------
    dim
        number of genes.
    n_conditions
        condition codes (code ``n_conditions`` is null).
    hidden
        token width.
    depth
        Transformer blocks.
    heads
        attention heads.
    max_tokens
        sequence length cap (Geneformer: 2,048).
    value_channel
        add each token's value encoding (see module docstring).
    mlp_ratio, time_dim, value_encoding
        as in :class:`~exprflow.backbones.sets.base.GeneSetBackbone`.
    """

    def __init__(self, dim: int, n_conditions: int = 0, hidden: int = 64, depth: int = 2, heads: int = 4,
                 max_tokens: int = GENEFORMER_MAX_TOKENS, value_channel: bool = True, mlp_ratio: float = 2.0,
                 time_dim: int = 64, value_encoding: str = "fourier") -> None:
        super().__init__(dim, n_conditions, hidden, time_dim, value_encoding)
        self.max_tokens = max_tokens
        self.value_channel = value_channel
        self.position = nn.Embedding(min(max_tokens, dim), hidden)
        nn.init.normal_(self.position.weight, std=0.02)
        self.blocks = nn.ModuleList(SAB(hidden, heads, mlp_ratio) for _ in range(depth))
        self.cell_to_gene = nn.Linear(hidden, hidden)
        self.register_buffer("medians", torch.ones(dim))

    @classmethod
    def small_config(cls) -> dict:
        """Tiny hyperparameters for fast tests."""
        return {"hidden": 16, "depth": 1, "heads": 2, "time_dim": 16}

    def setup_genes(self, context: GeneContext) -> None:
        """Gene names and standardisation (as every gene-set backbone), plus the TRAIN nonzero medians."""
        super().setup_genes(context)
        medians = nonzero_medians(context.counts, target_sum_of(context))
        self.medians.copy_(torch.as_tensor(medians, dtype=self.medians.dtype))

    def _sequence(self, u: Tensor, ids: Tensor, c_act: Tensor):
        """The rank-ordered tokens of the detected genes through the Transformer.

        Returns ``order (B, L)``, ``seq`` (the input tokens), ``S`` (their outputs), ``weights (B, L, 1)``
        (1 for real tokens, 0 for padding) and the cell embedding ``(B, hidden)``. Only the ``L`` tokens
        are embedded, so the cost beyond ranking follows the detected genes (capped at ``max_tokens``).
        """
        detected = u > DETECTION_THRESHOLD
        score = torch.expm1(u.clamp_min(0.0)) / self.medians[ids]  # normalised (sum 1e4) / median
        order, mask = rank_order(score, detected, self.max_tokens)  # (B, L)
        seq = self.genes.embedding(ids[order])
        if self.value_channel:
            seq = seq + self.genes.value(u.gather(1, order))
        seq = seq + self.position.weight[: order.shape[1]]
        S = seq
        for block in self.blocks:
            S = block(S, c_act, mask)
        weights = mask.unsqueeze(-1).to(S.dtype)  # (B, L, 1)
        cell = (S * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)  # (B, hidden)
        return order, seq, S, weights, cell

    def encode(self, tokens: Tensor, u: Tensor, ids: Tensor, c_act: Tensor) -> tuple[Tensor, Tensor]:
        order, seq, S, weights, cell = self._sequence(u, ids, c_act)
        index = order.unsqueeze(-1).expand(-1, -1, self.hidden)  # (B, L, hidden)
        z = tokens.scatter_add(1, index, (S - seq) * weights)
        return z + self.cell_to_gene(cell).unsqueeze(1), cell

    def embed(self, x: Tensor, t: Tensor | float | None = None, cond: Tensor | None = None,
              gene_ids: Tensor | None = None) -> Tensor:
        """Cell embedding (masked mean over the rank tokens) without building a token per gene."""
        ids, u, c_act = self._prepare(x, 1.0 if t is None else t, cond, gene_ids)
        return self._sequence(u, ids, c_act)[-1]
