"""prepare_counts on valid inputs: synthetic and real data, dropped cells, all matrix formats,
backed files, chunked reading, condition levels, and CountData behaviour."""

from __future__ import annotations

import dataclasses
import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from data_helpers import snapshot

import exprflow.data.io as data_io
from exprflow.data import CountData, prepare_counts
from exprflow.errors import ExprflowInputError


def assert_same(a: CountData, b: CountData) -> None:
    assert a.X.shape == b.X.shape and a.X.dtype == b.X.dtype == np.float32
    assert (a.X != b.X).nnz == 0
    np.testing.assert_array_equal(a.X.indptr, b.X.indptr)
    assert a.var_names == b.var_names and a.obs_names == b.obs_names
    np.testing.assert_array_equal(a.kept, b.kept)
    assert a.condition_levels == b.condition_levels and a.is_counts == b.is_counts
    if a.conditions is None:
        assert b.conditions is None
    else:
        np.testing.assert_array_equal(a.conditions, b.conditions)


def test_synthetic_success(counts_adata):
    check = snapshot(counts_adata)
    cd = prepare_counts(counts_adata, condition_key="cell_type")
    check()
    assert isinstance(cd.X, sp.csr_matrix) and cd.X.dtype == np.float32 and cd.X.has_canonical_format
    assert cd.X is not counts_adata.X and not np.shares_memory(cd.X.data, counts_adata.X.data)
    assert (cd.n_cells, cd.n_genes) == counts_adata.shape and cd.n_dropped_cells == 0
    assert cd.var_names == list(counts_adata.var_names) and cd.obs_names == list(counts_adata.obs_names)
    assert cd.condition_levels == ["type0", "type1", "type2"] and cd.n_levels == 3
    assert cd.conditions.dtype == np.int64
    expected = counts_adata.obs["cell_type"].cat.codes.to_numpy()
    np.testing.assert_array_equal(cd.conditions, expected)
    assert cd.is_counts and cd.layer is None and cd.condition_key == "cell_type"
    np.testing.assert_array_equal(cd.kept, np.arange(counts_adata.n_obs))
    np.testing.assert_allclose(cd.library_size, counts_adata.X.sum(1).A1)
    np.testing.assert_array_equal(cd.X.toarray(), counts_adata.X.toarray())


def test_real_pbmc3k(pbmc3k):
    check = snapshot(pbmc3k)
    cd = prepare_counts(pbmc3k, condition_key="cell_type")
    check()
    assert (cd.n_cells, cd.n_genes, cd.n_dropped_cells) == (2638, 2000, 0)
    assert cd.condition_levels == list(pbmc3k.obs["cell_type"].cat.categories) and cd.n_levels == 9
    assert cd.is_counts and cd.X.nnz == pbmc3k.X.nnz
    assert np.bincount(cd.conditions).tolist() == pbmc3k.obs["cell_type"].value_counts(sort=False).tolist()
    assert np.allclose(cd.library_size, pbmc3k.X.sum(1).A1)


def test_bundled_pbmc3k_matches_shared_copy(pbmc3k):
    from exprflow.datasets import bundled_path, pbmc3k as load_pbmc3k

    bundled = load_pbmc3k()
    assert bundled_path("pbmc3k").name == "pbmc3k_counts.h5ad"
    assert bundled.shape == pbmc3k.shape and (bundled.X != pbmc3k.X).nnz == 0


def test_zero_count_cells_are_dropped_and_counted(counts_adata, caplog):
    adata = counts_adata.copy()
    X = adata.X.tolil()
    for row in (0, 5, 6):
        X[row, :] = 0
    X = X.tocsr()
    X.data[X.indptr[1] : X.indptr[2]] = 0  # cell1: only explicit stored zeros, so it is empty too
    X.data[X.indptr[2]] = 0  # cell2: one explicit zero among counts, so it is kept
    assert X.getrow(1).nnz > 0
    adata.X = X
    check = snapshot(adata)
    with caplog.at_level(logging.WARNING, logger="exprflow.data"):
        cd = prepare_counts(adata, condition_key="cell_type")
    check()
    assert cd.n_dropped_cells == 4 and cd.n_cells == 116
    assert "Dropped 4 of 120 cells" in caplog.text
    np.testing.assert_array_equal(cd.kept, np.setdiff1d(np.arange(120), [0, 1, 5, 6]))
    assert cd.obs_names[0] == "cell2" and np.isfinite(cd.X.data).all()
    np.testing.assert_array_equal(cd.conditions, adata.obs["cell_type"].cat.codes.to_numpy()[cd.kept])
    assert (cd.library_size > 0).all()


def test_level_emptied_by_dropping_is_removed(counts_adata, caplog):
    adata = counts_adata.copy()
    codes = adata.obs["cell_type"].cat.codes.to_numpy()
    X = adata.X.tolil()
    for row in np.flatnonzero(codes == 1):
        X[row, :] = 0
    adata.X = X.tocsr()
    with caplog.at_level(logging.WARNING, logger="exprflow.data"):
        cd = prepare_counts(adata, condition_key="cell_type")
    assert cd.condition_levels == ["type0", "type2"] and set(cd.conditions) == {0, 1}
    assert "type1" in caplog.text


@pytest.mark.parametrize(
    "convert",
    [
        lambda X: X.toarray(),
        lambda X: X.toarray().astype(np.int64),
        lambda X: X.tocsc(),
        lambda X: sp.csr_array(X),
        lambda X: X.astype(np.float64),
        lambda X: X.astype(np.int32),
    ],
    ids=["dense", "dense-int64", "csc", "csr_array", "float64", "int32"],
)
def test_formats_give_identical_countdata(counts_adata, convert):
    reference = prepare_counts(counts_adata, condition_key="cell_type")
    adata = counts_adata.copy()
    adata.X = convert(counts_adata.X)
    check = snapshot(adata)
    assert_same(prepare_counts(adata, condition_key="cell_type"), reference)
    check()


def test_layer_gives_same_as_x(counts_adata):
    adata = counts_adata.copy()
    adata.layers["counts"] = adata.X.copy()
    adata.X = adata.X.copy()
    adata.X.data = np.log1p(adata.X.data)
    cd = prepare_counts(adata, layer="counts", condition_key="cell_type")
    assert cd.layer == "counts"
    assert_same(cd, prepare_counts(counts_adata, condition_key="cell_type"))


@pytest.mark.parametrize("dense", [False, True])
def test_backed_gives_identical_countdata(counts_adata, tmp_path, dense, monkeypatch):
    adata = counts_adata.copy()
    X = adata.X.tolil()
    X[3, :] = 0
    adata.X = X.tocsr().toarray() if dense else X.tocsr()
    path = tmp_path / "cells.h5ad"
    adata.write_h5ad(path)
    reference = prepare_counts(adata, condition_key="cell_type")
    monkeypatch.setattr(data_io, "CHUNK_ELEMENTS", 500)  # several chunks from disk
    backed = ad.read_h5ad(path, backed="r")
    try:
        check = snapshot(backed)
        cd = prepare_counts(backed, condition_key="cell_type")
        check()
        assert backed.isbacked
    finally:
        backed.file.close()
    assert_same(cd, reference)
    assert cd.n_dropped_cells == 1
    assert_same(prepare_counts(str(path), condition_key="cell_type"), reference)  # a path works too


def test_chunked_reading_matches_and_locates_errors(counts_adata, monkeypatch):
    reference = prepare_counts(counts_adata)
    monkeypatch.setattr(data_io, "CHUNK_ELEMENTS", 40)  # 1 row per dense chunk, 6 rows per sparse chunk
    assert_same(prepare_counts(counts_adata), reference)
    dense = counts_adata.copy()
    dense.X = counts_adata.X.toarray()
    assert_same(prepare_counts(dense), reference)
    bad = counts_adata.copy()
    X = bad.X.toarray()
    X[57, 9], X[90, 1] = 0.5, 1.5
    bad.X = sp.csr_matrix(X)
    with pytest.raises(ExprflowInputError, match=r"2 non-integer value\(s\), e.g. 0.5 at cell 'cell57', gene 'gene9'"):
        prepare_counts(bad)


def test_condition_level_order():
    adata = ad.AnnData(
        X=sp.csr_matrix(np.ones((6, 2), dtype=np.float32)),
        obs=pd.DataFrame(
            {
                "ordered_cat": pd.Categorical(list("zzyxxy"), categories=["z", "y", "x", "unused"]),
                "strings": list("bcabca"),
                "numbers": [10, 2, 1, 10, 2, 1],
                "flags": [True, False, True, False, True, False],
            },
            index=[f"c{i}" for i in range(6)],
        ),
        var=pd.DataFrame(index=["g0", "g1"]),
    )
    cd = prepare_counts(adata, condition_key="ordered_cat")  # categorical order, unused removed
    assert cd.condition_levels == ["z", "y", "x"] and cd.conditions.tolist() == [0, 0, 1, 2, 2, 1]
    cd = prepare_counts(adata, condition_key="strings")  # sorted strings
    assert cd.condition_levels == ["a", "b", "c"] and cd.conditions.tolist() == [1, 2, 0, 1, 2, 0]
    cd = prepare_counts(adata, condition_key="numbers")  # numeric order, not string order
    assert cd.condition_levels == ["1", "2", "10"] and cd.conditions.tolist() == [2, 1, 0, 2, 1, 0]
    cd = prepare_counts(adata, condition_key="flags")
    assert cd.condition_levels == ["False", "True"] and cd.conditions.tolist() == [1, 0, 1, 0, 1, 0]


def test_countdata_is_immutable(counts_adata):
    cd = prepare_counts(counts_adata, condition_key="cell_type")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cd.X = None
    for array in (cd.X.data, cd.X.indices, cd.X.indptr, cd.conditions, cd.kept, cd.library_size):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 1
    # ordinary read operations still work and give writeable results
    assert cd.X[[3, 1]].toarray().shape == (2, cd.n_genes)
    assert cd.X.copy().data.flags.writeable and np.log1p(cd.X).data.flags.writeable
    assert (cd.X.multiply(2.0)).sum() == pytest.approx(2 * cd.X.sum())


def test_subset(counts_adata):
    cd = prepare_counts(counts_adata, condition_key="cell_type")
    idx = np.array([5, 0, 17])
    sub = cd.subset(idx)
    assert sub.n_cells == 3 and sub.obs_names == ["cell5", "cell0", "cell17"]
    np.testing.assert_array_equal(sub.X.toarray(), cd.X[idx].toarray())
    np.testing.assert_array_equal(sub.conditions, cd.conditions[idx])
    np.testing.assert_array_equal(sub.kept, cd.kept[idx])
    assert sub.condition_levels == cd.condition_levels and sub.var_names == cd.var_names
    np.testing.assert_allclose(sub.library_size, cd.library_size[idx])
    mask = np.zeros(cd.n_cells, dtype=bool)
    mask[[1, 2]] = True
    assert cd.subset(mask).obs_names == ["cell1", "cell2"]
    assert cd.subset(slice(0, 4)).n_cells == 4
    with pytest.raises(ExprflowInputError, match=r"\[0, 120\)"):
        cd.subset([500])


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "dense"])
def test_iter_row_chunks_formats(counts_adata, fmt):
    """AnnData 0.12 stores only CSR/CSC, but the chunk reader takes any scipy format or dense array."""
    from exprflow.data import iter_row_chunks

    X = counts_adata.X.asformat(fmt) if fmt != "dense" else counts_adata.X.toarray()
    chunks = list(iter_row_chunks(X, chunk_rows=7))
    assert [start for start, _ in chunks] == list(range(0, 120, 7))
    stacked = sp.vstack([c for _, c in chunks], format="csr")
    assert all(c.format == "csr" and c.dtype == counts_adata.X.dtype for _, c in chunks)
    np.testing.assert_array_equal(stacked.toarray(), counts_adata.X.toarray())
    chunks[0][1].data[:] = -1  # chunks are copies
    assert (counts_adata.X.data >= 0).all() and (np.asarray(X.sum()) > 0)


def test_anndata_view_stays_a_view(counts_adata):
    view = counts_adata[10:60]
    check = snapshot(view)
    cd = prepare_counts(view, condition_key="cell_type")
    check()
    assert view.is_view and cd.n_cells == 50 and cd.obs_names[0] == "cell10"
    np.testing.assert_array_equal(cd.X.toarray(), counts_adata.X[10:60].toarray())
