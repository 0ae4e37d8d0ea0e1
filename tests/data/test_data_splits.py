"""split_indices: 80/20 sizes, stratification, determinism, disjoint and covering."""

from __future__ import annotations

import numpy as np
import pytest

from exprflow.data import prepare_counts, split_indices
from exprflow.errors import ExprflowInputError


def assert_partition(train: np.ndarray, test: np.ndarray, n: int) -> None:
    assert train.dtype == test.dtype == np.int64
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)  # sorted, no repeats
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.union1d(train, test), np.arange(n))


@pytest.mark.parametrize("n", [2, 3, 10, 101, 1000])
def test_unstratified_sizes(n):
    train, test = split_indices(n)
    assert_partition(train, test, n)
    assert test.size == min(max(1, round(0.2 * n + 1e-9)), n - 1)


def test_stratified_on_pbmc3k(pbmc3k):
    cd = prepare_counts(pbmc3k, condition_key="cell_type")
    train, test = split_indices(cd.n_cells, cd.conditions)
    assert_partition(train, test, cd.n_cells)
    assert test.size == round(0.2 * 2638)  # 528
    sizes = np.bincount(cd.conditions)
    test_sizes = np.bincount(cd.conditions[test], minlength=sizes.size)
    assert np.all(np.abs(test_sizes - 0.2 * sizes) < 1.0)  # each level within one cell of 20 %


def test_stratified_proportions_with_uneven_levels():
    labels = np.array(["a"] * 500 + ["b"] * 37 + ["c"] * 3 + ["single"] + ["d"] * 2)
    train, test = split_indices(labels.size, labels, test_fraction=0.25, seed=3)
    assert_partition(train, test, labels.size)
    assert test.size == round(0.25 * labels.size)
    counts = {lab: int((labels[test] == lab).sum()) for lab in np.unique(labels)}
    assert counts["a"] == 125 and counts["b"] in (9, 10) and counts["c"] in (0, 1)
    assert counts["single"] == 0  # a level with one cell stays in train
    for lab in np.unique(labels):
        assert (labels[train] == lab).any()  # every level keeps at least one training cell


def test_deterministic_and_seed_dependent():
    labels = np.repeat(np.arange(4), 50)
    a = split_indices(200, labels, seed=0)
    b = split_indices(200, labels, seed=0)
    c = split_indices(200, labels, seed=1)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    assert np.array_equal(np.bincount(labels[a[1]]), np.bincount(labels[c[1]]))  # same strata sizes
    assert not np.array_equal(split_indices(200)[1], split_indices(200, seed=5)[1])


def test_label_types():
    as_str = split_indices(60, np.array(["x", "y", "z"] * 20), seed=2)
    as_obj = split_indices(60, np.array(["x", "y", "z"] * 20, dtype=object), seed=2)
    np.testing.assert_array_equal(as_str[1], as_obj[1])
    with_nan = np.array([1.0, np.nan] * 30)
    train, test = split_indices(60, with_nan)
    assert_partition(train, test, 60)
    assert np.isnan(with_nan[test]).sum() == 6


def test_invalid_arguments():
    with pytest.raises(ExprflowInputError, match="test_fraction must be strictly between 0 and 1"):
        split_indices(10, test_fraction=1.0)
    with pytest.raises(ExprflowInputError, match="at least 2 cells"):
        split_indices(1)
    with pytest.raises(ExprflowInputError, match="one entry per cell"):
        split_indices(10, np.zeros(9))
    with pytest.raises(ExprflowInputError, match="every label occurs once"):
        split_indices(5, np.arange(5))
