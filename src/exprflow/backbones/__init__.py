"""Velocity backbones ``forward(x, t, cond) -> Tensor`` (see :mod:`exprflow.backbones.base`).

Importing this package registers every built-in backbone in :data:`BACKBONES`.
"""

from __future__ import annotations

from exprflow.backbones.base import Backbone
from exprflow.backbones.embeddings import ConditionEmbedding, TimeEmbedding, sinusoidal_embedding
from exprflow.backbones.mlp import AdaLNZeroBlock, MLPBackbone, MLPBackboneConfig
from exprflow.backbones.gene_sequence import GeneSequenceBackbone  # registers s4d, hyena, mamba, transformer
from exprflow.backbones.registry import BACKBONES
from exprflow.backbones import sets, tokens  # noqa: F401,E402  (registers deepsets, set_transformer, rank_tokens, value_bins)
from exprflow.backbones import pathways  # noqa: F401,E402  (registers pathway: gene sets as tokens)
from exprflow.backbones import cell_set  # noqa: F401,E402  (registers cell_set: cells as tokens, PopulationFlow)

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
