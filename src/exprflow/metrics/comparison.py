"""One comparison of the protocol: every metric between a candidate set and a real test set.

The candidate is the generated cells (the model's row) or a subsample of real train cells (the floor
row); both rows go through this same function so that they are comparable.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from exprflow.metrics.distances import energy, mmd, w2
from exprflow.metrics.diversity import coverage, dcr
from exprflow.metrics.gene_level import GENE_METRICS, GeneStatistics, gene_level_metrics, gene_statistics
from exprflow.metrics.two_sample import c2st_knn, c2st_lr
from exprflow.metrics.undefined import MetricUndefined

logger = logging.getLogger(__name__)

PCA_METRICS: tuple[str, ...] = ("w2", "mmd", "energy", "c2st_knn", "c2st_lr", "coverage", "dcr")
METRIC_NAMES: tuple[str, ...] = PCA_METRICS + GENE_METRICS

Values = dict[str, float | None]
Reasons = dict[str, str]


@dataclass(frozen=True)
class CellSet:
    """One side of a comparison: reference-space coordinates and per-gene statistics of the same cells."""

    z: np.ndarray
    stats: GeneStatistics

    @classmethod
    def from_rows(cls, x, z: np.ndarray, rows: np.ndarray, *, counts: bool) -> CellSet:
        """The cells ``rows`` of the count matrix ``x`` and of its projection ``z``."""
        return cls(z=z[rows], stats=gene_statistics(x[rows], counts=counts))


def compare(candidate: CellSet, real: CellSet, z_train_reference: np.ndarray, *, seed: int) -> tuple[Values, Reasons]:
    """All metrics of ``candidate`` vs ``real``; ``z_train_reference`` are the train cells for ``dcr``.

    Returns ``(values, reasons)``: a value is None exactly when ``reasons`` explains why.
    """
    y, x = candidate.z, real.z
    computations: dict[str, Callable[[], float]] = {
        "w2": lambda: w2(y, x),
        "mmd": lambda: mmd(y, x),
        "energy": lambda: energy(y, x),
        "c2st_knn": lambda: c2st_knn(x, y, seed=seed),
        "c2st_lr": lambda: c2st_lr(x, y, seed=seed),
        "coverage": lambda: coverage(x, y),
        "dcr": lambda: dcr(y, x, z_train_reference),
    }
    values: Values = {}
    reasons: Reasons = {}
    for name, compute in computations.items():
        start = time.perf_counter()
        values[name], reason = guarded(name, compute)
        if reason is not None:
            reasons[name] = reason
        logger.debug("%s = %s (%.2f s)", name, values[name], time.perf_counter() - start)
    gene_values, gene_reasons = gene_level_metrics(candidate.stats, real.stats)
    values.update(gene_values)
    reasons.update(gene_reasons)
    return values, reasons


def guarded(name: str, compute: Callable[[], float]) -> tuple[float | None, str | None]:
    """Run one metric: ``(value, None)``, or ``(None, reason)`` if undefined or not finite."""
    try:
        value = float(compute())
    except MetricUndefined as exc:
        return None, str(exc)
    if not math.isfinite(value):
        return None, f"{name}: the computation gave a non-finite value"
    return value, None
