"""Count-level metrics on the gene space."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from exprflow.metrics import gene_level_metrics, gene_statistics


def test_statistics_match_numpy_and_sparse_equals_dense():
    x = np.random.default_rng(0).poisson(2.0, size=(40, 6)).astype(float)
    norm = np.log1p(x / x.sum(1, keepdims=True) * 1e4)
    for matrix in (x, sp.csr_matrix(x)):
        stats = gene_statistics(matrix, chunk_size=7)
        np.testing.assert_allclose(stats.mean, norm.mean(0))
        np.testing.assert_allclose(stats.var, norm.var(0, ddof=1), atol=1e-10)
        np.testing.assert_allclose(stats.zero_frac, (x == 0).mean(0))
        np.testing.assert_allclose(stats.library_size, x.sum(1))


def test_library_size_difference_is_between_means():
    real = gene_statistics(np.array([[10.0, 0.0], [20.0, 10.0]]))  # libraries 10, 30: mean 20
    gen = gene_statistics(np.array([[5.0, 0.0], [15.0, 10.0]]))  # libraries 5, 25: mean 15
    values, _ = gene_level_metrics(gen, real)
    assert values["library_size_mad"] == pytest.approx(5.0)
    assert values["library_size_rel_diff"] == pytest.approx(0.25)


def test_all_zero_gene_gives_no_nan():
    x = np.random.default_rng(1).poisson(3.0, size=(30, 5)).astype(float)
    x[:, 2] = 0
    values, reasons = gene_level_metrics(gene_statistics(x[:15]), gene_statistics(x[15:]))
    assert all(v is not None and np.isfinite(v) for v in values.values())
    assert reasons == {}


def test_constant_statistic_vector_gives_none_with_reason():
    real = gene_statistics(np.random.default_rng(2).poisson(3.0, size=(20, 4)).astype(float))
    values, reasons = gene_level_metrics(gene_statistics(np.zeros((20, 4))), real)
    assert values["pearson_mean"] is None and "pearson_mean" in reasons


def test_non_count_data_has_no_library_size():
    x = np.random.default_rng(3).gamma(1.0, 5.0, size=(20, 4))
    values, reasons = gene_level_metrics(gene_statistics(x, counts=False), gene_statistics(x, counts=False))
    assert values["library_size_mad"] is None and "count data" in reasons["library_size_mad"]
    assert values["pearson_mean"] == pytest.approx(1.0)
