"""Foundation-model tokenizations as flow backbones (baselines): Geneformer rank-value tokens and
scGPT value bins. Importing this package registers ``rank_tokens`` and ``value_bins``.
"""

from __future__ import annotations

from exprflow.backbones.tokens.rank_tokens import RankTokensBackbone
from exprflow.backbones.tokens.value_bins import ValueBinsBackbone

__all__ = ["RankTokensBackbone", "ValueBinsBackbone"]
