"""Velocity backbones ``forward(x, t, cond) -> Tensor`` (see :mod:`exprflow.backbones.base`).

Importing this package registers every built-in backbone in :data:`BACKBONES`.
"""

from __future__ import annotations

from exprflow.backbones.base import Backbone
from exprflow.backbones.embeddings import ConditionEmbedding, TimeEmbedding, sinusoidal_embedding
from exprflow.backbones.mlp import AdaLNZeroBlock, MLPBackbone, MLPBackboneConfig
from exprflow.backbones.gene_sequence import GeneSequenceBackbone  # registers s4d, hyena, mamba, transformer
from exprflow.backbones.registry import BACKBONES

__all__ = [
    "BACKBONES",
    "AdaLNZeroBlock",
    "Backbone",
    "ConditionEmbedding",
    "GeneSequenceBackbone",
    "MLPBackbone",
    "MLPBackboneConfig",
    "TimeEmbedding",
    "sinusoidal_embedding",
]
