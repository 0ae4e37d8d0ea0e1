"""A Mamba (selective state-space) block with pluggable scans (Gu & Dao, "Mamba", 2023; the scalar
per-head decay of Mamba-2, Dao & Gu 2024), written from the papers.

::

    x, z, B, C, dt = in_proj(u)                       # x, z: (B, L, E = expand * D); B, C: (B, L, N); dt: (B, L, H)
    x, B, C = SiLU(causal depthwise conv(x, B, C))    # short local mixing
    dt = softplus(dt + dt_bias);  A = -exp(A_log)     # input-dependent step: the "selection"
    y = scan(x as (B, L, H, P), dt, A, B, C) + D x    # see exprflow.backbones.ssm.scans
    out = out_proj(y * SiLU(z))

Bidirectional (``causal=False``): a second block with its own parameters reads the sequence backwards
and the two outputs are added.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from exprflow.backbones.sequence import MIXERS
from exprflow.backbones.ssm.scans import SCANS


def causal_depthwise_conv(u: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``y[l] = bias + sum_j weight[:, j] u[l - (k - 1) + j]`` on ``(B, L, C)``, zeros before the start.

    Written as a sum of shifted copies: torch's CPU ``conv1d`` backward for depthwise kernels of size 4
    took 12 s where this takes about 0.5 s (batch 32, length 1,024, 288 channels).
    """
    k = weight.shape[-1]
    L = u.shape[1]
    padded = F.pad(u, (0, 0, k - 1, 0))  # (B, L + k - 1, C)
    y = bias + padded[:, :L] * weight[:, 0]
    for j in range(1, k):
        y = y + padded[:, j : j + L] * weight[:, j]
    return y


class SelectiveSSM(nn.Module):
    """One causal Mamba block ``(B, L, D) -> (B, L, D)`` (see module docstring)."""

    def __init__(self, width: int, state_dim: int = 16, expand: int = 2, head_dim: int = 64, conv_kernel: int = 4,
                 scan: str = "auto", chunk_size: int = 64, dt_min: float = 1e-3, dt_max: float = 1e-1) -> None:
        super().__init__()
        self.inner = expand * width
        self.head_dim = min(head_dim, self.inner)
        if self.inner % self.head_dim:
            raise ValueError(f"expand * width = {self.inner} must be a multiple of head_dim = {self.head_dim}")
        self.n_heads = self.inner // self.head_dim
        self.state_dim = state_dim
        self.scan_name, self.chunk_size = scan, chunk_size
        self.scan = SCANS.get(scan)
        conv_channels = self.inner + 2 * state_dim
        self.in_proj = nn.Linear(width, 2 * self.inner + 2 * state_dim + self.n_heads)
        self.conv = nn.Conv1d(conv_channels, conv_channels, conv_kernel, groups=conv_channels)
        # dt_bias: softplus^-1 of steps log-uniform in [dt_min, dt_max] (the Mamba initialisation)
        dt = torch.exp(torch.rand(self.n_heads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.linspace(1.0, 16.0, self.n_heads)))
        self.D = nn.Parameter(torch.ones(self.n_heads))
        self.out_proj = nn.Linear(self.inner, width)

    def forward(self, u: Tensor) -> Tensor:
        batch, L, _ = u.shape
        E, N, H, P = self.inner, self.state_dim, self.n_heads, self.head_dim
        x_bc, z, dt = self.in_proj(u).split([E + 2 * N, E, H], dim=-1)
        x_bc = F.silu(causal_depthwise_conv(x_bc, self.conv.weight[:, 0, :], self.conv.bias))
        x, B, C = x_bc.split([E, N, N], dim=-1)
        dt = F.softplus(dt + self.dt_bias)  # (B, L, H)
        A = -torch.exp(self.A_log)  # (H,)
        x = x.reshape(batch, L, H, P)
        y = self.scan(x, dt, A, B, C, self.chunk_size) + self.D[:, None] * x
        return self.out_proj(y.reshape(batch, L, E) * F.silu(z))


@MIXERS.register("mamba")
class Mamba(nn.Module):
    """Mamba sequence mixer: one :class:`SelectiveSSM` (causal) or a forward and a backward one."""

    def __init__(self, width: int, causal: bool = False, **kwargs) -> None:
        super().__init__()
        self.fwd = SelectiveSSM(width, **kwargs)
        self.bwd = None if causal else SelectiveSSM(width, **kwargs)

    def forward(self, u: Tensor) -> Tensor:
        y = self.fwd(u)
        if self.bwd is not None:
            y = y + self.bwd(u.flip(1)).flip(1)
        return y
