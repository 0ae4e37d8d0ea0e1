"""Set Transformer blocks (Lee et al., "Set Transformer", 2019), conditioned with adaLN-Zero.

Paper notation, with ``X (B, n, d)`` and ``Y (B, m, d)`` sets of vectors::

    MAB(X, Y) = H + rFF(H),  H = X + Multihead(X, Y, Y)     # Multihead Attention Block
    SAB(X)    = MAB(X, X)                                     # Set Attention Block, O(n^2)
    ISAB(X)   = MAB(X, MAB(I, X))                             # Induced SAB, I: m learned inducing points, O(n m)
    PMA_k(Z)  = MAB(S, rFF(Z))                                # Pooling by Multihead Attention, S: k seeds

No positional encoding: SAB and ISAB are permutation equivariant, PMA is invariant. exprflow's blocks
are pre-LayerNorm and conditioned on flow time and condition ``c`` (adaLN-Zero, Peebles & Xie 2023):
the normalised inputs of the attention are modulated by ``(shift, scale)`` from ``c`` and its output
is scaled by a gate that starts at zero; ``rFF`` is :class:`exprflow.backbones.mlp.AdaLNZeroBlock`.
Every block therefore starts as the identity in its query argument.

``key_mask (B, m)`` (True = real element) lets sets of different sizes share a padded batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from exprflow.backbones.mlp import AdaLNZeroBlock, _modulate

_LN_EPS = 1e-6


class MultiheadAttention(nn.Module):
    """``Multihead(Q, K, V)`` with learned projections; ``(B, n, d), (B, m, d) -> (B, n, d)``."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)

    def forward(self, query: Tensor, keys: Tensor, key_mask: Tensor | None = None) -> Tensor:
        b, n, d = query.shape
        m = keys.shape[1]
        q = self.q(query).view(b, n, self.heads, d // self.heads).transpose(1, 2)  # (B, h, n, d_h)
        k, v = self.kv(keys).view(b, m, 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # (B, h, m, d_h)
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, m)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, n, d_h)
        return self.out(o.transpose(1, 2).reshape(b, n, d))


class MAB(nn.Module):
    """Multihead Attention Block ``MAB(X, Y, c)`` (see module docstring)."""

    def __init__(self, width: int, heads: int = 4, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.attention = MultiheadAttention(width, heads)
        self.modulation = nn.Linear(width, 3 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)
        self.rff = AdaLNZeroBlock(width, mlp_ratio)

    def forward(self, X: Tensor, Y: Tensor, c_act: Tensor, key_mask: Tensor | None = None) -> Tensor:
        """``X (B, n, d)``, ``Y (B, m, d)``, ``c_act = SiLU(c) (B, d)`` -> ``(B, n, d)``."""
        c_act = c_act.unsqueeze(1)  # (B, 1, d): one modulation per set
        shift, scale, gate = self.modulation(c_act).chunk(3, dim=-1)
        q = _modulate(F.layer_norm(X, X.shape[-1:], eps=_LN_EPS), shift, scale)
        kv = q if Y is X else _modulate(F.layer_norm(Y, Y.shape[-1:], eps=_LN_EPS), shift, scale)
        H = X + gate * self.attention(q, kv, key_mask)
        return self.rff(H, c_act)


class SAB(nn.Module):
    """Set Attention Block ``SAB(X) = MAB(X, X)``."""

    def __init__(self, width: int, heads: int = 4, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.mab = MAB(width, heads, mlp_ratio)

    def forward(self, X: Tensor, c_act: Tensor, key_mask: Tensor | None = None) -> Tensor:
        return self.mab(X, X, c_act, key_mask)


class ISAB(nn.Module):
    """Induced Set Attention Block ``ISAB_m(X) = MAB(X, MAB(I, X))`` with ``m`` inducing points ``I``."""

    def __init__(self, width: int, n_inducing: int = 16, heads: int = 4, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.inducing = nn.Parameter(0.02 * torch.randn(n_inducing, width))
        self.mab_in = MAB(width, heads, mlp_ratio)
        self.mab_out = MAB(width, heads, mlp_ratio)

    def forward(self, X: Tensor, c_act: Tensor, key_mask: Tensor | None = None) -> Tensor:
        I = self.inducing.expand(X.shape[0], -1, -1)  # (B, m, d)
        H = self.mab_in(I, X, c_act, key_mask)  # (B, m, d): the set summarised on m points
        return self.mab_out(X, H, c_act)


class PMA(nn.Module):
    """Pooling by Multihead Attention ``PMA_k(Z) = MAB(S, rFF(Z))`` with ``k`` learned seeds ``S``."""

    def __init__(self, width: int, n_seeds: int = 1, heads: int = 4, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.seeds = nn.Parameter(0.02 * torch.randn(n_seeds, width))
        self.rff = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))
        self.mab = MAB(width, heads, mlp_ratio)

    def forward(self, Z: Tensor, c_act: Tensor, key_mask: Tensor | None = None) -> Tensor:
        """``Z (B, n, d)`` -> ``(B, k, d)``, invariant to the order of ``Z``'s elements."""
        S = self.seeds.expand(Z.shape[0], -1, -1)
        return self.mab(S, self.rff(Z), c_act, key_mask)
