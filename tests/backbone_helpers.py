"""Helpers for backbone tests: build a small backbone and wake up its zero-initialised layers.

A plain module (``from backbone_helpers import ...``); tests/backbones/conftest.py exposes the fixture.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from exprflow.backbones import BACKBONES


def build_backbone(name: str, dim: int, n_conditions: int = 0) -> nn.Module:
    """A backbone from the registry with the tiny hyperparameters of its ``small_config()`` (if any)."""
    cls = BACKBONES.get(name)
    small = getattr(cls, "small_config", None)
    kwargs = small() if callable(small) else {}
    model = cls(dim=dim, n_conditions=n_conditions, **kwargs)
    toy_context = getattr(cls, "toy_gene_context", None)  # backbones that are only themselves after setup_genes
    if callable(toy_context):
        model.setup_genes(toy_context(dim))
    return model


def perturb_parameters(model: nn.Module, std: float = 0.1, seed: int = 0) -> nn.Module:
    """Add small Gaussian noise to every parameter (in place), so zero-initialised layers (adaLN-Zero
    gates, output layers) no longer hide the dependence on ``t`` and ``cond``."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(std * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model


@pytest.fixture
def make_backbone():
    """``make_backbone(name, dim, n_conditions=0, perturb=True)`` -> a small, perturbed backbone."""

    def factory(name: str, dim: int, n_conditions: int = 0, perturb: bool = True) -> nn.Module:
        torch.manual_seed(0)
        model = build_backbone(name, dim, n_conditions)
        return perturb_parameters(model) if perturb else model

    return factory
