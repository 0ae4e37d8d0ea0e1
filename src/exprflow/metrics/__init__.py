"""The evaluation protocol (``docs/evaluation.md``, protocol_version 1).

``evaluate(real_test, generated, real_train)`` returns a JSON-serialisable dict with the model's row,
the floor row (real train subsample vs real test) and the ratios to the floor; ``format_report`` renders
it as Markdown. ``ReferenceSpace`` (normalise + PCA fitted on train cells) is reusable elsewhere
(baselines, plots); the metric functions are importable one by one.
"""

from __future__ import annotations

from exprflow.metrics.distances import energy, mmd, w2
from exprflow.metrics.diversity import coverage, dcr
from exprflow.metrics.gene_level import GeneStatistics, gene_level_metrics, gene_statistics
from exprflow.metrics.protocol import PROTOCOL_VERSION, evaluate
from exprflow.metrics.reference import ReferenceSpace, normalise_rows
from exprflow.metrics.report import format_report
from exprflow.metrics.two_sample import c2st_knn, c2st_lr
from exprflow.metrics.undefined import MetricUndefined

__all__ = [
    "PROTOCOL_VERSION",
    "GeneStatistics",
    "MetricUndefined",
    "ReferenceSpace",
    "c2st_knn",
    "c2st_lr",
    "coverage",
    "dcr",
    "energy",
    "evaluate",
    "format_report",
    "gene_level_metrics",
    "gene_statistics",
    "mmd",
    "normalise_rows",
    "w2",
]
