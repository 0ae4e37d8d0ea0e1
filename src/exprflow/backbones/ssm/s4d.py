"""S4D: a diagonal state-space layer (Gu, Gupta, Goel & Re, "On the Parameterization and Initialization
of Diagonal State Space Models", 2022), written from the paper.

Each of the D channels is a linear time-invariant system with N/2 complex-conjugate pairs of diagonal
states. With ZOH discretisation of step ``dt``::

    A_n = -exp(log_A_real_n) + i * A_imag_n                         # S4D-Lin init: -1/2 + i pi n
    dA_n = exp(dt * A_n),   dB_n = (exp(dt * A_n) - 1) / A_n       # (B = 1 absorbed into C)
    K[l] = 2 Re( sum_n C_n dB_n dA_n^l ),   l = 0..L-1              # Vandermonde product

and the layer output is the convolution ``y = K * u + D u``, computed by FFT in O(L log L).
Bidirectional (``causal=False``): a second kernel runs from the end of the sequence backwards; both are
placed in one two-sided kernel of length 2L so a single FFT convolution serves both directions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from exprflow.backbones.sequence import MIXERS


def fft_conv(u: Tensor, k: Tensor) -> Tensor:
    """Convolve ``u (B, L, D)`` with per-channel kernels along L by FFT.

    ``k``: ``(D, L)`` causal kernel (``y[i] = sum_{j<=i} k[i-j] u[j]``), or a ``(D, 2L)`` two-sided
    circular kernel whose entry ``2L - m`` (``m >= 1``) weighs ``u[i + m]`` (the anti-causal part).
    The transform runs over the last axis of a ``(B, D, L)`` copy: contiguous FFTs are about 1.7x
    faster on CPU than strided ones (see :func:`fft_conv_channels_first`).
    """
    return fft_conv_channels_first(u.transpose(1, 2), k).transpose(1, 2)


def fft_conv_channels_first(u: Tensor, k: Tensor) -> Tensor:
    """:func:`fft_conv` on ``u (B, D, L)`` -> ``(B, D, L)``: no layout change, for callers that keep
    channels first (Hyena). Zero padding to 2L makes the circular convolution linear; computed in
    float32 (float64 stays float64)."""
    L = u.shape[-1]
    n = 2 * L
    dtype = torch.float64 if u.dtype == torch.float64 else torch.float32
    u_f = torch.fft.rfft(u.to(dtype), n=n)  # (B, D, L+1)
    k_f = torch.fft.rfft(k.to(dtype), n=n)  # (D, L+1)
    return torch.fft.irfft(u_f * k_f, n=n)[..., :L].to(u.dtype)


def vandermonde(coef: Tensor, dtA: Tensor, L: int, block: int = 64) -> Tensor:
    """``K[d, l] = 2 Re(sum_n coef[d, n] exp(dtA[d, n] l))`` for ``l < L``, without a ``(D, N, L)`` tensor.

    Writing ``l = q S + r`` (``S = block``): ``dA^l = dA^(q S) dA^r``, so K is one complex batched matrix
    product ``(Q, N) @ (N, S)`` per channel; only ``O(D N (Q + S))`` powers are exponentiated.
    """
    S = min(block, L)
    Q = -(-L // S)
    r = torch.arange(S, device=dtA.device, dtype=dtA.real.dtype)
    q = torch.arange(Q, device=dtA.device, dtype=dtA.real.dtype) * S
    right = coef[:, :, None] * torch.exp(dtA[:, :, None] * r)  # (D, N, S): coef dA^r
    left = torch.exp(dtA[:, None, :] * q[None, :, None])  # (D, Q, N): dA^(q S)
    K = torch.bmm(left, right).reshape(dtA.shape[0], Q * S)[:, :L]
    return 2.0 * K.real


def two_sided_kernel(k_fwd: Tensor, k_bwd: Tensor) -> Tensor:
    """``(..., D, L)`` forward and backward kernels -> the ``(..., D, 2L)`` kernel of :func:`fft_conv`.

    Entry ``m < L`` is ``k_fwd[m]`` (weighs ``u[i - m]``), entry ``2L - m`` is ``k_bwd[m]`` for
    ``m >= 1`` (weighs ``u[i + m]``); ``k_bwd[0]`` is dropped (lag 0 belongs to the forward kernel).
    """
    zero = torch.zeros_like(k_fwd[..., :1])
    return torch.cat([k_fwd, zero, k_bwd[..., 1:].flip(-1)], dim=-1)


def add_to_lag0(k: Tensor, skip: Tensor) -> Tensor:
    """Kernel ``k (..., D, L)`` with ``skip (..., D)`` added to its lag-0 tap: ``k * u + skip u`` in one
    convolution (saves two passes over ``(B, L, D)``)."""
    return torch.cat([k[..., :1] + skip[..., None], k[..., 1:]], dim=-1)


class S4DKernel(nn.Module):
    """The S4D convolution kernel of ``channels`` systems with ``state_dim`` (real) states each."""

    def __init__(self, channels: int, state_dim: int = 64, dt_min: float = 1e-3, dt_max: float = 1e-1) -> None:
        super().__init__()
        half = max(state_dim // 2, 1)
        log_dt = torch.rand(channels) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)
        self.log_A_real = nn.Parameter(torch.log(0.5 * torch.ones(channels, half)))
        self.A_imag = nn.Parameter(math.pi * torch.arange(half).float().repeat(channels, 1))
        C = torch.randn(channels, half, dtype=torch.cfloat) * math.sqrt(0.5)
        self.C = nn.Parameter(torch.view_as_real(C))  # (D, N/2, 2): stored real for optimisers

    def forward(self, L: int) -> Tensor:
        """Kernel ``(channels, L)``, real."""
        dt = torch.exp(self.log_dt)[:, None]  # (D, 1)
        A = torch.complex(-torch.exp(self.log_A_real), self.A_imag)  # (D, N/2)
        dtA = dt * A
        dA = torch.exp(dtA)
        C = torch.view_as_complex(self.C) * (dA - 1.0) / A  # C * dB
        return vandermonde(C, dtA, L)


@MIXERS.register("s4d")
class S4D(nn.Module):
    """S4D sequence mixer ``(B, L, D) -> (B, L, D)``: FFT convolution with the S4D kernel, skip ``D u``,
    GELU and a pointwise output projection (the S4D paper's layer)."""

    def __init__(self, width: int, causal: bool = False, state_dim: int = 64, dt_min: float = 1e-3,
                 dt_max: float = 1e-1) -> None:
        super().__init__()
        self.causal = causal
        self.kernel_fwd = S4DKernel(width, state_dim, dt_min, dt_max)
        self.kernel_bwd = None if causal else S4DKernel(width, state_dim, dt_min, dt_max)
        self.D = nn.Parameter(torch.randn(width))
        self.out_proj = nn.Linear(width, width)

    def kernel(self, L: int) -> Tensor:
        """``(D, L)`` causal kernel or ``(D, 2L)`` two-sided kernel (see :func:`fft_conv`); the skip
        ``D u`` is folded into the lag-0 tap, which saves two passes over ``(B, L, D)``."""
        k = add_to_lag0(self.kernel_fwd(L), self.D)
        if self.kernel_bwd is None:
            return k
        return two_sided_kernel(k, self.kernel_bwd(L))

    def forward(self, u: Tensor) -> Tensor:
        y = fft_conv(u, self.kernel(u.shape[1]))  # K * u + D u
        return self.out_proj(torch.nn.functional.gelu(y))
