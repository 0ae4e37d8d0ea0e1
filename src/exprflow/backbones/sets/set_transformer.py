"""Set Transformer over genes (Lee et al., 2019): genes are entities, attention has no positions.

::

    tokens_g = e_g + V(u_g)                                 # GeneEntityEncoder, (B, G, hidden)
    Z = ISAB_m(... ISAB_m(tokens))                          # or SAB (exact, O(G^2)); equivariant
    cell = PMA_1(Z)                                         # invariant cell embedding, (B, hidden)
    v_g = GeneHead(Z_g + W cell, c)                         # equivariant per-gene velocity

ISAB costs O(G m) per cell with ``m`` inducing points, so G = 2,000-14,000 genes fit; SAB is the
exact quadratic version for small panels. All blocks are conditioned on ``c`` (adaLN-Zero).
"""

from __future__ import annotations

from torch import Tensor, nn

from exprflow.backbones.registry import BACKBONES
from exprflow.backbones.sets.attention import ISAB, PMA, SAB
from exprflow.backbones.sets.base import GeneSetBackbone


@BACKBONES.register("set_transformer")
class SetTransformerBackbone(GeneSetBackbone):
    """Set Transformer velocity network over the set of genes (see module docstring).

    Parameters
    ----------
    dim
        number of genes.
    n_conditions
        condition codes (code ``n_conditions`` is null).
    hidden
        token width.
    depth
        number of attention blocks.
    heads
        attention heads.
    attention
        ``"isab"`` (inducing points) or ``"sab"`` (full self-attention).
    n_inducing
        inducing points ``m`` of each ISAB.
    mlp_ratio
        inner width of the row-wise feed-forward layers.
    time_dim
        width of the sinusoidal time code.
    value_encoding
        ``"fourier"`` or ``"linear"``.
    """

    def __init__(self, dim: int, n_conditions: int = 0, hidden: int = 64, depth: int = 2, heads: int = 4,
                 attention: str = "isab", n_inducing: int = 16, mlp_ratio: float = 2.0, time_dim: int = 64,
                 value_encoding: str = "fourier") -> None:
        super().__init__(dim, n_conditions, hidden, time_dim, value_encoding)
        if attention == "isab":
            self.blocks = nn.ModuleList(ISAB(hidden, n_inducing, heads, mlp_ratio) for _ in range(depth))
        elif attention == "sab":
            self.blocks = nn.ModuleList(SAB(hidden, heads, mlp_ratio) for _ in range(depth))
        else:
            raise ValueError(f"attention must be 'isab' or 'sab', got {attention!r}")
        self.pool = PMA(hidden, 1, heads, mlp_ratio)
        self.cell_to_gene = nn.Linear(hidden, hidden)

    @classmethod
    def small_config(cls) -> dict:
        """Tiny hyperparameters for fast tests."""
        return {"hidden": 16, "depth": 1, "heads": 2, "n_inducing": 4, "time_dim": 16}

    def encode(self, tokens: Tensor, u: Tensor, ids: Tensor, c_act: Tensor) -> tuple[Tensor, Tensor]:
        Z = tokens
        for block in self.blocks:
            Z = block(Z, c_act)  # (B, G, hidden)
        cell = self.pool(Z, c_act).squeeze(1)  # (B, hidden)
        return Z + self.cell_to_gene(cell).unsqueeze(1), cell
