"""Genes as a set: DeepSets (Zaheer et al. 2017) and the Set Transformer (Lee et al. 2019) over gene entities.

Importing this package registers the backbones ``deepsets`` and ``set_transformer``.
"""

from __future__ import annotations

from exprflow.backbones.sets.attention import ISAB, MAB, PMA, SAB, MultiheadAttention
from exprflow.backbones.sets.base import GeneHead, GeneSetBackbone
from exprflow.backbones.sets.deepsets import DeepSetsBackbone
from exprflow.backbones.sets.genes import GeneEntityEncoder, GeneMatch, ValueEncoding, gene_hash, match_gene_panel
from exprflow.backbones.sets.set_transformer import SetTransformerBackbone

__all__ = [
    "DeepSetsBackbone",
    "GeneEntityEncoder",
    "GeneHead",
    "GeneMatch",
    "GeneSetBackbone",
    "ISAB",
    "MAB",
    "MultiheadAttention",
    "PMA",
    "SAB",
    "SetTransformerBackbone",
    "ValueEncoding",
    "gene_hash",
    "match_gene_panel",
]
