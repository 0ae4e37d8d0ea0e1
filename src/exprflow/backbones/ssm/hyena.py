"""The Hyena operator (Poli et al., "Hyena Hierarchy: Towards Larger Convolutional Language Models",
2023), written from the paper.

Order-2 recurrence over projections ``v, x1, x2`` of the input (each after a short depthwise conv)::

    z = v;   z = x1 * (h1 conv z);   z = x2 * (h2 conv z);   y = out_proj(z)

The long filters ``h_n`` are *implicit*: a small MLP with sine activations maps positional features of
the lag (``t = l / L`` and Fourier features of it) to one value per channel, multiplied by an exponential
decay window ``exp(-alpha_d t)`` with rates spread over channels (some filters reach across the whole
sequence, others stay local). Convolutions are FFT convolutions, O(L log L). Bidirectional
(``causal=False``): the filter MLP also gives the anti-causal lags and one two-sided kernel is used.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from exprflow.backbones.sequence import MIXERS
from exprflow.backbones.ssm.s4d import add_to_lag0, fft_conv_channels_first, two_sided_kernel


class Sine(nn.Module):
    """``sin(w x)`` activation of the implicit filter (the paper's choice; ``w`` sets the frequency)."""

    def __init__(self, w: float = 1.0) -> None:
        super().__init__()
        self.w = w

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.w * x)


class ImplicitFilter(nn.Module):
    """``n_filters`` long filters of ``channels`` channels, as a function of sequence length.

    ``forward(L) -> (n_filters, channels, L)`` causal filters, or ``(n_filters, channels, 2L)``
    two-sided ones when ``two_sided``.
    """

    def __init__(self, channels: int, n_filters: int, two_sided: bool, emb_dim: int = 17,
                 filter_width: int = 64, decay_min: float = 1.0, decay_max: float = 100.0) -> None:
        super().__init__()
        self.channels, self.n_filters, self.two_sided = channels, n_filters, two_sided
        self.n_freq = max((emb_dim - 1) // 2, 1)
        n_out = n_filters * channels * (2 if two_sided else 1)
        self.mlp = nn.Sequential(
            nn.Linear(1 + 2 * self.n_freq, filter_width), Sine(),
            nn.Linear(filter_width, filter_width), Sine(),
            nn.Linear(filter_width, n_out, bias=False),
        )
        rates = torch.exp(torch.linspace(math.log(decay_min), math.log(decay_max), channels))
        self.register_buffer("decay_rates", rates, persistent=False)  # (channels,)
        self.bias = nn.Parameter(torch.zeros(n_filters, channels))

    def features(self, L: int, like: Tensor) -> Tensor:
        t = torch.arange(L, device=like.device, dtype=like.dtype)[:, None] / L  # (L, 1)
        k = torch.arange(1, self.n_freq + 1, device=like.device, dtype=like.dtype)[None, :]
        angles = 2 * math.pi * k * t
        return torch.cat([t, torch.cos(angles), torch.sin(angles)], dim=-1)  # (L, 1 + 2 n_freq)

    def forward(self, L: int) -> Tensor:
        feats = self.features(L, self.bias)
        h = self.mlp(feats).T  # (n_out, L)
        window = torch.exp(-self.decay_rates[:, None] * feats[None, :, 0])  # (channels, L)
        sides = 2 if self.two_sided else 1
        h = h.reshape(sides, self.n_filters, self.channels, L) * window  # decayed
        causal = add_to_lag0(h[0], self.bias)  # lag-0 tap: a learned skip per channel
        return two_sided_kernel(causal, h[1]) if self.two_sided else causal


@MIXERS.register("hyena")
class Hyena(nn.Module):
    """Hyena operator of order ``order`` as a sequence mixer ``(B, L, D) -> (B, L, D)``."""

    def __init__(self, width: int, causal: bool = False, order: int = 2, short_kernel: int = 3,
                 emb_dim: int = 17, filter_width: int = 64) -> None:
        super().__init__()
        self.causal, self.order = causal, order
        self.in_proj = nn.Linear(width, (order + 1) * width)
        channels = (order + 1) * width
        self.short_pad = short_kernel - 1 if causal else (short_kernel - 1) // 2
        self.short_conv = nn.Conv1d(channels, channels, short_kernel, groups=channels)
        self.filters = ImplicitFilter(width, order, two_sided=not causal, emb_dim=emb_dim,
                                      filter_width=filter_width)
        self.out_proj = nn.Linear(width, width)

    def _short(self, u: Tensor) -> Tensor:
        """Depthwise short conv over L: ``(B, L, C) -> (B, C, L)`` (left padding only when causal).

        The result stays channels first, as the long FFT convolutions want it: the layout changes
        once on the way in and once on the way out of the operator.
        """
        k = self.short_conv.kernel_size[0]
        u = F.pad(u.transpose(1, 2), (self.short_pad, k - 1 - self.short_pad))
        return self.short_conv(u)

    def forward(self, u: Tensor) -> Tensor:
        L = u.shape[1]
        proj = self._short(self.in_proj(u)).chunk(self.order + 1, dim=1)  # each (B, D, L)
        h = self.filters(L)  # (order, D, L or 2L)
        z = proj[0]
        for n in range(self.order):
            z = proj[n + 1] * fft_conv_channels_first(z, h[n])
        return self.out_proj(z.transpose(1, 2))
