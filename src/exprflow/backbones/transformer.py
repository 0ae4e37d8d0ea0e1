"""Multi-head self-attention as a sequence mixer (the comparison point of the SSMs).

``(B, L, D) -> (B, L, D)`` with ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels
where torch has them, O(L) memory); causal masking with ``causal=True``. Positions enter through the
backbone that uses it (learned position embeddings), not here.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from exprflow.backbones.sequence import MIXERS


@MIXERS.register("attention")
class SelfAttention(nn.Module):
    """Multi-head self-attention mixer with ``n_heads`` heads."""

    def __init__(self, width: int, causal: bool = False, n_heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        if width % n_heads:
            raise ValueError(f"width {width} must be a multiple of n_heads {n_heads}")
        self.n_heads, self.causal, self.dropout = n_heads, causal, dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, u: Tensor) -> Tensor:
        batch, L, D = u.shape
        q, k, v = self.qkv(u).reshape(batch, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(y.transpose(1, 2).reshape(batch, L, D))
