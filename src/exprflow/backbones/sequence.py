"""Sequence backbones: a stack of adaLN-Zero blocks around a pluggable sequence mixer.

A *mixer* maps ``(B, L, D) -> (B, L, D)`` along the sequence axis (S4D, Hyena, Mamba, attention); it is
chosen by name from :data:`MIXERS` and built as ``MIXERS.build(name, width, causal=..., **kwargs)``. The
same stack serves the gene axis (patches of genes, :mod:`exprflow.backbones.gene_sequence`) and, later,
the time axis of trajectories.

Each block (adaLN-Zero, Peebles & Xie 2023, written from the paper) is::

    c (B, D) = conditioning vector (flow time + condition)
    shift1, scale1, gate1, shift2, scale2, gate2 = Linear(SiLU(c))       # zero-initialised
    h = h + gate1 * Mixer(LN(h) * (1 + scale1) + shift1)
    h = h + gate2 * MLP(LN(h) * (1 + scale2) + shift2)

so a fresh block is the identity. The modulation is per sample and broadcast over the L positions.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from exprflow.backbones.mlp import _LN_EPS, _modulate
from exprflow.registry import Registry

MIXERS: Registry = Registry("sequence mixer")


def _layer_norm(h: Tensor) -> Tensor:
    return F.layer_norm(h, h.shape[-1:], eps=_LN_EPS)


class SequenceBlock(nn.Module):
    """One adaLN-Zero block: sequence mixer sub-layer then channel MLP sub-layer (see module docstring)."""

    def __init__(self, width: int, mixer: str, causal: bool = False, mlp_ratio: float = 2.0,
                 dropout: float = 0.0, mixer_kwargs: dict | None = None) -> None:
        super().__init__()
        self.mixer = MIXERS.build(mixer, width, causal=causal, **(mixer_kwargs or {}))
        inner = int(round(width * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(width, inner), nn.GELU(), nn.Dropout(dropout), nn.Linear(inner, width))
        self.modulation = nn.Linear(width, 6 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, h: Tensor, c_act: Tensor) -> Tensor:
        """``h (B, L, D)``, ``c_act = SiLU(c)`` of shape ``(B, D)`` -> ``(B, L, D)``."""
        mod = self.modulation(c_act)[:, None, :]  # (B, 1, 6D): broadcast over positions
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6, dim=-1)
        h = h + gate1 * self.mixer(_modulate(_layer_norm(h), shift1, scale1))
        return h + gate2 * self.mlp(_modulate(_layer_norm(h), shift2, scale2))


class SequenceStack(nn.Module):
    """``depth`` :class:`SequenceBlock` s and a final adaptive LayerNorm: ``(B, L, D), (B, D) -> (B, L, D)``.

    ``mixers`` may name one mixer for every block or a list with one name per block (hybrids such as
    SSM layers interleaved with attention layers).
    """

    def __init__(self, width: int, depth: int, mixers: str | list[str], causal: bool = False,
                 mlp_ratio: float = 2.0, dropout: float = 0.0, mixer_kwargs: dict | None = None) -> None:
        super().__init__()
        names = [mixers] * depth if isinstance(mixers, str) else list(mixers)
        if len(names) != depth:
            raise ValueError(f"got {len(names)} mixer names for depth {depth}")
        kwargs = mixer_kwargs or {}
        self.blocks = nn.ModuleList(
            SequenceBlock(width, name, causal, mlp_ratio, dropout, kwargs.get(name, {})) for name in names
        )
        self.final_modulation = nn.Linear(width, 2 * width)
        nn.init.zeros_(self.final_modulation.weight)
        nn.init.zeros_(self.final_modulation.bias)

    def forward(self, h: Tensor, c_act: Tensor) -> Tensor:
        for block in self.blocks:
            h = block(h, c_act)
        shift, scale = self.final_modulation(c_act)[:, None, :].chunk(2, dim=-1)
        return _modulate(_layer_norm(h), shift, scale)
