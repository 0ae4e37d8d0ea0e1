"""Diversity and memorisation checks in the reference space (docs/evaluation.md).

- ``coverage`` (Naeem et al. 2020, "Reliable fidelity and diversity metrics for generative models"):
  the fraction of real cells whose k-nearest-neighbour ball among the real cells holds at least one
  generated cell. The ball of real cell ``i`` has radius ``r_i`` = distance to its k-th nearest *other*
  real cell; as in the authors' code a generated cell ``j`` lies in it when ``|x_i - y_j| < r_i``.
- ``dcr`` (distance to closest record): median distance of generated cells to their nearest real
  TRAIN cell divided by the same median for real test cells. Near 1 is healthy; well below 1 means
  the generator copies training cells.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

from exprflow.metrics.undefined import MetricUndefined

COVERAGE_K = 5
_BLOCK_ROWS = 1024


def nearest_sq_distance(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Squared euclidean distance from each row of ``x`` to its nearest row of ``ref`` (exact, float64)."""
    x = np.asarray(x, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if len(ref) == 0:
        raise MetricUndefined("no reference cells to measure nearest-neighbour distances against")
    ref_sq = np.einsum("ij,ij->i", ref, ref)
    out = np.empty(len(x), dtype=np.float64)
    for start in range(0, len(x), _BLOCK_ROWS):
        block = x[start:start + _BLOCK_ROWS]
        # Fast candidate search with the dot-product expansion, then the exact distance of the winner.
        approx = ref_sq[None, :] - 2.0 * block @ ref.T
        nearest = np.argmin(approx, axis=1)
        out[start:start + len(block)] = np.sum((block - ref[nearest]) ** 2, axis=1)
    return out


def coverage(x_real: np.ndarray, x_gen: np.ndarray, *, k: int = COVERAGE_K) -> float:
    """Fraction of real cells whose ``k``-NN ball (among real cells) contains a generated cell."""
    x_real = np.asarray(x_real, dtype=np.float64)
    if len(x_real) <= k:
        raise MetricUndefined(f"coverage: needs more than {k} real cells")
    radius_sq = np.empty(len(x_real))
    for start in range(0, len(x_real), _BLOCK_ROWS):
        d = cdist(x_real[start:start + _BLOCK_ROWS], x_real, "sqeuclidean")
        radius_sq[start:start + len(d)] = np.partition(d, k, axis=1)[:, k]  # index 0 is the cell itself
    covered = nearest_sq_distance(x_real, x_gen) < radius_sq
    return float(covered.mean())


def dcr(x_gen: np.ndarray, x_real: np.ndarray, x_train: np.ndarray) -> float:
    """median_j min_t |y_j - t| / median_i min_t |x_i - t|, with t over the train cells ``x_train``."""
    gen_median = float(np.median(np.sqrt(nearest_sq_distance(x_gen, x_train))))
    real_median = float(np.median(np.sqrt(nearest_sq_distance(x_real, x_train))))
    if real_median <= 0.0:
        raise MetricUndefined("dcr: the real test cells' median distance to the train cells is 0 (duplicated cells)")
    return gen_median / real_median
