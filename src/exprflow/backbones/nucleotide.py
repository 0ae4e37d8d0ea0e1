"""Causal nucleotide language-model networks: Hyena or Transformer over nucleotide tokens.

::

    tokens (B, L) in 0..4  ->  embedding (B, L, W)  [+ sinusoidal positions: Transformer only]
                           ->  SequenceStack(W, depth, mixer, causal=True)  conditioned on a learned constant c
                           ->  Linear  ->  logits (B, L, 4)    (next nucleotide A, C, G, T; N is never predicted)

The stack is :class:`exprflow.backbones.sequence.SequenceStack`; its adaLN-Zero conditioning vector is a
learned constant (there is no flow time in a language model). The logits at position ``i`` depend only
on tokens ``0..i`` (causal mixers) and predict token ``i + 1``.

Hyena needs no position code: its implicit long filters are functions of the lag and the decay
windows of its slowest channels reach across the whole window. Attention is permutation-equivariant, so
the Transformer adds a sinusoidal position code (no parameters, any length). Hyena's implicit filters
are evaluated at lag ``l / L``, so a Hyena network should be run at the window length it was trained at;
:class:`exprflow.models.nucleotide_lm.NucleotideLM` always does (right-padding shorter inputs, which a
causal network cannot see).

This is not a velocity field and is deliberately not in the flow ``BACKBONES`` registry; the two
language-model backbones live in :data:`LM_BACKBONES`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from exprflow.backbones.embeddings import sinusoidal_embedding
from exprflow.backbones.sequence import SequenceStack
from exprflow.registry import Registry
from exprflow.representations.dna import ALPHABET, N_NUCLEOTIDES

# importing the mixer modules registers "hyena" and "attention" in MIXERS
from exprflow.backbones.ssm import hyena as _hyena  # noqa: F401
from exprflow.backbones import transformer as _transformer  # noqa: F401

#: name -> (sequence mixer in MIXERS, adds a sinusoidal position code, default mixer options)
LM_BACKBONES: Registry = Registry("nucleotide language-model backbone")
LM_BACKBONES.register("hyena")(("hyena", False, {}))
LM_BACKBONES.register("transformer")(("attention", True, {"n_heads": 4}))


class CausalNucleotideNet(nn.Module):
    """Next-nucleotide logits ``(B, L, 4)`` from tokens ``(B, L)`` (see the module docstring)."""

    def __init__(self, backbone: str = "hyena", width: int = 64, depth: int = 2, mlp_ratio: float = 2.0,
                 mixer_kwargs: dict | None = None) -> None:
        super().__init__()
        mixer, self.positional, defaults = LM_BACKBONES.get(backbone)
        self.backbone, self.width = backbone, width
        self.embed = nn.Embedding(len(ALPHABET), width)
        nn.init.normal_(self.embed.weight, std=0.02 * width ** 0.5)
        self.condition = nn.Parameter(torch.randn(width))  # the adaLN conditioning vector, a constant
        self.stack = SequenceStack(width, depth, mixer, causal=True, mlp_ratio=mlp_ratio,
                                   mixer_kwargs={mixer: {**defaults, **(mixer_kwargs or {})}})
        self.head = nn.Linear(width, N_NUCLEOTIDES)

    def forward(self, tokens: Tensor) -> Tensor:
        batch, L = tokens.shape
        h = self.embed(tokens.long())  # (B, L, W)
        if self.positional:
            positions = torch.arange(L, device=tokens.device)
            h = h + sinusoidal_embedding(positions, self.width, scale=1.0).to(h.dtype)[None]
        c_act = F.silu(self.condition).expand(batch, -1)  # (B, W)
        return self.head(self.stack(h, c_act))


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
