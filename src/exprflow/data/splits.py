"""Train/test split of cells (docs/evaluation.md: 80 % / 20 %, stratified by the condition, seed 0)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from exprflow.errors import ExprflowInputError


def _apportion(sizes: np.ndarray, capacity: np.ndarray, total: int, fraction: float) -> np.ndarray:
    """Test cells per group: proportional to ``sizes``, summing to ``total`` (largest remainder).

    Each group gets at most ``capacity`` cells; ties go to the earlier group, so the result is deterministic.
    """
    quota = sizes * fraction
    take = np.minimum(np.floor(quota).astype(np.int64), capacity)
    remainder = quota - take
    order = np.lexsort((np.arange(len(sizes)), -remainder))  # largest remainder first, then group order
    left = total - int(take.sum())
    while left > 0:
        progressed = False
        for g in order:
            if left == 0:
                break
            if take[g] < capacity[g]:
                take[g] += 1
                left -= 1
                progressed = True
        if not progressed:
            break
    return take


def split_indices(
    n_cells: int,
    labels: np.ndarray | None = None,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``n_cells`` cells into sorted, disjoint ``(train_idx, test_idx)`` covering all cells.

    The test set has ``round(test_fraction * n_cells)`` cells (at least 1 and at most ``n_cells - 1``).
    With ``labels`` the split is stratified: each level contributes test cells in proportion to its size
    (largest-remainder rounding), keeps at least one cell in train, and a level with a single cell goes
    to train. The result depends only on ``n_cells``, ``labels``, ``test_fraction`` and ``seed``.

    Parameters
    ----------
    n_cells
        Number of cells.
    labels
        One label per cell (any hashable values, e.g. ``CountData.conditions``), or ``None``.
    test_fraction
        Fraction of cells in the test set, in ``(0, 1)``.
    seed
        Seed of the permutation.

    Returns
    -------
    tuple of numpy.ndarray
        ``(train_idx, test_idx)``, int64, each sorted ascending.
    """
    n_cells = int(n_cells)
    if not 0.0 < float(test_fraction) < 1.0:
        raise ExprflowInputError(
            f"test_fraction must be strictly between 0 and 1, got {test_fraction}. The evaluation "
            "protocol uses test_fraction=0.2 (80 % train / 20 % test)."
        )
    if n_cells < 2:
        raise ExprflowInputError(
            f"Cannot split {n_cells} cell(s) into train and test: at least 2 cells are needed. "
            "Use a dataset with more cells."
        )
    if labels is None:
        groups = np.zeros(n_cells, dtype=np.int64)
    else:
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.shape[0] != n_cells:
            raise ExprflowInputError(
                f"labels must have one entry per cell ({n_cells}), got shape {labels.shape}. "
                "Pass e.g. CountData.conditions for the same cells."
            )
        groups, _ = pd.factorize(labels, sort=False, use_na_sentinel=False)
    n_groups = int(groups.max()) + 1
    members = [np.flatnonzero(groups == g) for g in range(n_groups)]
    sizes = np.array([m.size for m in members], dtype=np.int64)
    capacity = np.maximum(sizes - 1, 0)  # one cell of every group stays in train
    total = min(max(1, int(np.floor(n_cells * test_fraction + 0.5))), n_cells - 1, int(capacity.sum()))
    if total == 0:
        raise ExprflowInputError(
            f"Cannot stratify {n_cells} cells: every label occurs once, so no cell can go to the test set "
            "without leaving its label out of train. Split without labels (labels=None)."
        )
    n_test = _apportion(sizes, capacity, total, float(test_fraction))

    rng = np.random.default_rng(seed)
    test_parts = [rng.permutation(m)[:k] for m, k in zip(members, n_test)]
    test = np.sort(np.concatenate(test_parts)).astype(np.int64)
    is_test = np.zeros(n_cells, dtype=bool)
    is_test[test] = True
    return np.flatnonzero(~is_test).astype(np.int64), test
