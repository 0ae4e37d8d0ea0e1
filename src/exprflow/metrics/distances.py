"""Distribution distances between two point clouds in the reference space (docs/evaluation.md).

All three take ``x`` (n, d) and ``y`` (m, d) arrays and compute in float64:

- ``w2``: exact 2-Wasserstein distance with uniform weights (POT's network simplex).
- ``mmd``: biased (V-statistic) MMD^2 with a sum of RBF kernels, ``k = sum_s exp(-d / (2 s^2))``,
  ``s`` in {0.1, 1, 10, 100}, ``d`` the squared euclidean distance.
- ``energy``: energy distance ``2 E|x-y| - E|x-x'| - E|y-y'|`` (euclidean).

Pairwise sums are accumulated over row blocks so memory stays bounded for large sets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import ot
from scipy.spatial.distance import cdist

from exprflow.metrics.undefined import MetricUndefined

logger = logging.getLogger(__name__)

MMD_SIGMAS: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)
EMD_MAX_ITER = 10_000_000
_BLOCK_ROWS = 1024


def _as_float64(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-d array of points, got shape {x.shape}")
    return x


def _pairwise_mean(x: np.ndarray, y: np.ndarray, f: Callable[[np.ndarray], np.ndarray]) -> float:
    """Mean of ``f(d_ij)`` over all pairs (i, j), d the squared euclidean distance; row blocks."""
    total = 0.0
    for start in range(0, x.shape[0], _BLOCK_ROWS):
        d = cdist(x[start:start + _BLOCK_ROWS], y, "sqeuclidean")
        total += float(f(d).sum())
    return total / (x.shape[0] * y.shape[0])


def w2(x: np.ndarray, y: np.ndarray, *, num_iter_max: int = EMD_MAX_ITER) -> float:
    """Exact 2-Wasserstein distance: ``sqrt(ot.emd2(uniform, uniform, squared euclidean cost))``.

    Raises ``MetricUndefined`` when the network simplex does not reach the optimum.
    """
    x, y = _as_float64(x), _as_float64(y)
    cost = cdist(x, y, "sqeuclidean")
    a = np.full(x.shape[0], 1.0 / x.shape[0])
    b = np.full(y.shape[0], 1.0 / y.shape[0])
    value, log = ot.emd2(a, b, cost, numItermax=num_iter_max, log=True)
    if log["result_code"] != 1:
        raise MetricUndefined(f"w2: exact OT did not converge ({log['warning']}) with numItermax={num_iter_max}")
    return float(np.sqrt(max(float(value), 0.0)))


def _kernel_sum(sigmas: tuple[float, ...]) -> Callable[[np.ndarray], np.ndarray]:
    def kernel(d: np.ndarray) -> np.ndarray:
        return sum(np.exp(-d / (2.0 * s * s)) for s in sigmas)

    return kernel


def mmd(x: np.ndarray, y: np.ndarray, *, sigmas: tuple[float, ...] = MMD_SIGMAS) -> float:
    """Biased MMD^2 = mean k(x, x') + mean k(y, y') - 2 mean k(x, y), all pairs incl. i = j.

    The biased estimator is non-negative; rounding below zero is clipped to 0.
    """
    x, y = _as_float64(x), _as_float64(y)
    kernel = _kernel_sum(sigmas)
    value = _pairwise_mean(x, x, kernel) + _pairwise_mean(y, y, kernel) - 2.0 * _pairwise_mean(x, y, kernel)
    return max(value, 0.0)


def energy(x: np.ndarray, y: np.ndarray) -> float:
    """Energy distance ``2 E|x-y| - E|x-x'| - E|y-y'|`` (euclidean norm).

    V-statistic: the expectations average over all pairs, the zero diagonal (x = x') included, so the
    value is 0 for identical sets and never negative (rounding below zero is clipped to 0).
    """
    x, y = _as_float64(x), _as_float64(y)
    value = 2.0 * _pairwise_mean(x, y, np.sqrt) - _pairwise_mean(x, x, np.sqrt) - _pairwise_mean(y, y, np.sqrt)
    return max(value, 0.0)
