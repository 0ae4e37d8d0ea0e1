"""The reference space: normalisation and a PCA fitted on train cells only."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from metrics_helpers import make_counts
from sklearn.decomposition import PCA

from exprflow.errors import ExprflowInputError
from exprflow.metrics import ReferenceSpace, normalise_rows


def test_counts_normalisation_is_log1p_of_cp10k():
    x = np.array([[1.0, 3.0, 0.0], [0.0, 0.0, 0.0], [5.0, 5.0, 10.0]])
    expected = np.log1p(x / np.maximum(x.sum(1, keepdims=True), 1) * 1e4)
    space = ReferenceSpace(counts=True)
    np.testing.assert_allclose(space.normalise(x), expected)
    np.testing.assert_allclose(space.normalise(sp.csr_matrix(x)), expected)


def test_non_count_normalisation_is_log1p_only():
    x = np.array([[0.5, 30.0, 0.0], [2.0, 0.0, 100.0]])
    np.testing.assert_allclose(ReferenceSpace(counts=False).normalise(x), np.log1p(x))


def test_normalise_does_not_modify_input_and_chunks_agree():
    adata = make_counts(n_cells=50)
    before = adata.X.copy()
    whole = normalise_rows(adata.X).toarray()
    chunked = ReferenceSpace(chunk_size=7).normalise(adata.X)
    np.testing.assert_allclose(chunked, whole)
    assert (adata.X != before).nnz == 0


def test_pca_matches_sklearn_on_train_and_ignores_test():
    train = make_counts(n_cells=200, seed=0).X
    test_a = make_counts(n_cells=40, seed=1).X
    test_b = make_counts(n_cells=40, seed=2).X
    space = ReferenceSpace(n_components=10, chunk_size=16).fit(train)
    reference = PCA(10, svd_solver="full").fit(normalise_rows(train).toarray())
    z = space.transform(test_a)
    z_ref = reference.transform(normalise_rows(test_a).toarray())
    np.testing.assert_allclose(np.abs(z), np.abs(z_ref), atol=1e-6)  # components agree up to sign
    # The projection of a cell depends only on the train fit, not on which other cells are projected.
    both = space.transform(sp.vstack([test_a, test_b]).tocsr())
    np.testing.assert_allclose(both[:40], z)
    assert z.shape == (40, 10) and z.dtype == np.float64


def test_sparse_and_dense_inputs_project_identically():
    train = make_counts(n_cells=100).X
    space = ReferenceSpace(n_components=5).fit(train)
    np.testing.assert_allclose(space.transform(train), space.transform(train.toarray()), atol=1e-10)


def test_components_are_capped_for_tiny_data():
    space = ReferenceSpace(n_components=30).fit(make_counts(n_cells=12, n_genes=8).X)
    assert space.n_components_ == 7


def test_transform_rejects_wrong_gene_count():
    space = ReferenceSpace(n_components=5).fit(make_counts(n_cells=50).X)
    with pytest.raises(ExprflowInputError, match="genes"):
        space.transform(np.zeros((3, 7)))
