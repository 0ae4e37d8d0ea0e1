"""Geneformer rank-value tokens and scGPT value bins (exprflow.representations.tokens)."""

import numpy as np
import scipy.sparse as sp
import torch

from exprflow.representations.tokens import (
    nonzero_medians,
    normalise_total,
    rank_order,
    rank_value_tokens,
    value_bins,
    value_bins_torch,
)


def _counts(n_cells=30, n_genes=50, seed=0, p=0.4):
    rng = np.random.default_rng(seed)
    dense = rng.poisson(3.0, size=(n_cells, n_genes)) * (rng.random((n_cells, n_genes)) < p)
    dense[:, 0] += 1  # no empty cell
    return sp.csr_matrix(dense.astype(np.float64))


def test_normalise_total_scales_cells_to_10k():
    X = normalise_total(_counts())
    np.testing.assert_allclose(np.asarray(X.sum(axis=1)).ravel(), 1e4)


def test_nonzero_medians_ignore_zeros_and_use_only_the_cells_given():
    counts = sp.csr_matrix(np.array([[1.0, 0.0, 3.0], [3.0, 0.0, 1.0], [0.0, 0.0, 4.0]]))
    # normalised rows: [2500, 0, 7500], [7500, 0, 2500], [0, 0, 10000]
    np.testing.assert_allclose(nonzero_medians(counts), [5000.0, 1.0, 7500.0])  # gene 1 never detected -> 1
    train, test = counts[:2], counts[2:]
    np.testing.assert_allclose(nonzero_medians(train), [5000.0, 1.0, 5000.0])  # the test cell is not seen


def test_rank_value_tokens_order_by_normalised_over_median_with_index_ties():
    counts = sp.csr_matrix(np.array([[4.0, 2.0, 2.0, 0.0, 2.0]]))
    medians = np.array([4000.0, 1000.0, 2000.0, 1.0, 1000.0])
    tokens, lengths = rank_value_tokens(counts, medians)
    # normalised = [4000, 2000, 2000, 0, 2000] / medians = [1, 2, 1, -, 2]: genes 1, 4 (tie), then 0, 2 (tie)
    assert lengths.tolist() == [4]
    assert tokens.tolist() == [[1, 4, 0, 2]]


def test_rank_value_tokens_truncate_to_2048_highest():
    rng = np.random.default_rng(1)
    counts = sp.csr_matrix(rng.integers(1, 50, size=(2, 3000)).astype(np.float64))
    medians = rng.uniform(1.0, 5.0, size=3000)
    tokens, lengths = rank_value_tokens(counts, medians)
    assert tokens.shape == (2, 2048) and lengths.tolist() == [2048, 2048]
    score = normalise_total(counts).toarray() / medians
    for i in range(2):
        kept = score[i, tokens[i]]
        assert np.all(np.diff(kept) <= 0)
        dropped = np.setdiff1d(np.arange(3000), tokens[i])
        assert kept.min() >= score[i, dropped].max()


def test_rank_order_torch_matches_numpy_tokens():
    counts = _counts(seed=2)
    medians = nonzero_medians(counts)
    tokens, lengths = rank_value_tokens(counts, medians, max_tokens=12)
    normalised = torch.from_numpy(normalise_total(counts).toarray())  # integer counts: many ties
    order, mask = rank_order(normalised / torch.from_numpy(medians), normalised > 0, max_tokens=12)
    assert mask.sum(1).tolist() == lengths.tolist()
    for i in range(counts.shape[0]):
        assert order[i, : lengths[i]].tolist() == tokens[i, : lengths[i]].tolist()


def test_value_bins_51_per_cell_quantiles():
    rng = np.random.default_rng(3)
    values = rng.exponential(size=(4, 200)) * (rng.random((4, 200)) < 0.5)
    bins = value_bins(values)
    assert bins.min() == 0 and bins.max() == 50
    np.testing.assert_array_equal(bins == 0, values == 0)
    for i in range(4):
        nz = values[i] > 0
        assert bins[i, nz].min() == 1 and bins[i, np.argmax(values[i])] == 50
        # monotone within the cell, roughly uniform occupancy of the 50 nonzero bins
        order = np.argsort(values[i, nz])
        assert np.all(np.diff(bins[i, nz][order]) >= 0)
        assert len(np.unique(bins[i, nz])) > 40
    # per-cell: scaling one cell leaves its bins unchanged; equal values share a bin
    scaled = values.copy()
    scaled[0] *= 7.0
    np.testing.assert_array_equal(value_bins(scaled), bins)
    tied = np.array([[0.0, 2.0, 2.0, 5.0, 1.0]])
    b = value_bins(tied)
    assert b[0, 1] == b[0, 2] and b[0, 0] == 0 and b[0, 3] == 50


def test_value_bins_torch_matches_numpy():
    rng = np.random.default_rng(4)
    values = np.round(rng.exponential(size=(5, 80)) * (rng.random((5, 80)) < 0.6), 2)
    values[4] = 0.0  # a cell with nothing detected
    got = value_bins_torch(torch.from_numpy(values)).numpy()
    np.testing.assert_array_equal(got, value_bins(values))
