"""Embeddings of flow time and of condition codes, shared by all backbones.

- :func:`sinusoidal_embedding` maps flow time ``t in [0, 1]`` to sines and cosines of geometrically
  spaced frequencies (the Transformer positional code applied to ``scale * t``; ``scale = 1000`` puts
  ``[0, 1]`` on the range the usual frequencies ``1 / max_period^(k / half)`` were designed for).
- :class:`TimeEmbedding` is that code followed by a two-layer MLP.
- :class:`ConditionEmbedding` is a lookup table with one extra row: code ``n_conditions`` is the *null*
  condition of classifier-free guidance, and ``cond=None`` means "all null".
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def broadcast_time(t: Tensor | float, batch_size: int, like: Tensor) -> Tensor:
    """Return flow time as a ``(batch_size,)`` tensor on the device of ``like``.

    Accepts a Python float, a 0-d or one-element tensor (shared by the whole batch) or a ``(B,)`` tensor.
    Time stays float32 (float64 if ``like`` is float64) even for half-precision states.
    """
    dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
    t = torch.as_tensor(t, device=like.device).to(dtype)
    if t.numel() == 1:
        return t.reshape(1).expand(batch_size)
    if t.shape != (batch_size,):
        raise ValueError(f"t must be a scalar or have shape ({batch_size},), got {tuple(t.shape)}")
    return t


def sinusoidal_embedding(t: Tensor, dim: int, scale: float = 1000.0, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal code of ``t`` (shape ``(B,)``) -> ``(B, dim)``: ``[cos(w_k s t), sin(w_k s t)]``.

    Frequencies ``w_k = max_period^(-k / half)`` for ``k = 0..half-1`` with ``half = dim // 2``; an odd
    ``dim`` gets one zero column.
    """
    half = dim // 2
    k = torch.arange(half, device=t.device, dtype=torch.float32)
    freqs = torch.exp(-math.log(max_period) * k / half)  # (half,)
    angles = (scale * t.float())[:, None] * freqs[None, :]  # (B, half)
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimeEmbedding(nn.Module):
    """Flow time ``t (B,)`` -> ``(B, out_dim)``: sinusoidal code (width ``freq_dim``), Linear-SiLU-Linear."""

    def __init__(self, out_dim: int, freq_dim: int = 128, scale: float = 1000.0) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.scale = scale
        self.mlp = nn.Sequential(nn.Linear(freq_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))
        for layer in (self.mlp[0], self.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)

    def forward(self, t: Tensor) -> Tensor:
        emb = sinusoidal_embedding(t, self.freq_dim, scale=self.scale)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


class ConditionEmbedding(nn.Module):
    """Condition codes ``(B,)`` in ``[0, n_conditions]`` -> ``(B, out_dim)``; code ``n_conditions`` is null.

    With ``n_conditions = 0`` the table has only the null row (an unconditional model).
    """

    def __init__(self, n_conditions: int, out_dim: int) -> None:
        super().__init__()
        if n_conditions < 0:
            raise ValueError(f"n_conditions must be >= 0, got {n_conditions}")
        self.n_conditions = n_conditions
        self.table = nn.Embedding(n_conditions + 1, out_dim)
        nn.init.normal_(self.table.weight, std=0.02)

    @property
    def null_code(self) -> int:
        """The code of the null (unconditional) condition."""
        return self.n_conditions

    def codes(self, cond: Tensor | None, batch_size: int, device: torch.device) -> Tensor:
        """Integer codes ``(B,)``: ``cond`` as ``long``, or all null codes when ``cond`` is None."""
        if cond is None:
            return torch.full((batch_size,), self.null_code, dtype=torch.long, device=device)
        return cond.to(device=device, dtype=torch.long).reshape(batch_size)

    def forward(self, codes: Tensor) -> Tensor:
        return self.table(codes)
