"""Property test: any small matrix with random defects ends in a valid CountData or an
ExprflowInputError (never another exception), and the input AnnData is never modified."""

from __future__ import annotations


import anndata as ad
import pytest
import numpy as np
import pandas as pd
import scipy.sparse as sp
from data_helpers import result_or_input_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exprflow.data import CountData, prepare_counts

DEFECTS = st.sampled_from(["nan", "inf", "-inf", "negative", "fraction", "zero_row", "huge", "none"])


@st.composite
def anndatas(draw):
    n_cells = draw(st.integers(1, 8))
    n_genes = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int32, np.int64]))
    values = rng.poisson(1.0, size=(n_cells, n_genes)) * (rng.random((n_cells, n_genes)) < 0.6)
    values = values.astype(np.float64)
    for defect in draw(st.lists(DEFECTS, max_size=3)):
        i, j = rng.integers(n_cells), rng.integers(n_genes)
        if defect == "zero_row":
            values[i] = 0
        elif defect != "none" and np.issubdtype(dtype, np.floating):
            values[i, j] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "negative": -2.0,
                            "fraction": 0.3, "huge": 1e300}[defect]
        elif defect == "negative":
            values[i, j] = -3
    with np.errstate(over="ignore", invalid="ignore"):
        X = values.astype(dtype)
    fmt = draw(st.sampled_from(["dense", "csr", "csc"]))
    if fmt != "dense":
        X = sp.csr_matrix(X) if fmt == "csr" else sp.csc_matrix(X)
    labels = rng.choice(["a", "b", None], size=n_cells, p=[0.45, 0.45, 0.1])
    obs = pd.DataFrame({"label": pd.Categorical(labels)}, index=[f"c{i}" for i in range(n_cells)])
    var = pd.DataFrame(index=[f"g{j}" for j in range(n_genes)])
    layer = draw(st.sampled_from([None, "counts"]))
    if layer is None:
        return ad.AnnData(X=X, obs=obs, var=var), None
    return ad.AnnData(X=np.zeros((n_cells, n_genes), dtype=np.float32), obs=obs, var=var, layers={"counts": X}), layer


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=anndatas(), require_counts=st.booleans(), use_condition=st.booleans())
def test_valid_countdata_or_input_error(case, require_counts, use_condition):
    adata, layer = case
    cd = result_or_input_error(adata, lambda: prepare_counts(
        adata, layer=layer, condition_key="label" if use_condition else None, require_counts=require_counts))
    if cd is None:
        return
    assert isinstance(cd, CountData)
    assert cd.X.format == "csr" and cd.X.dtype == np.float32 and np.isfinite(cd.X.data).all()
    assert cd.n_cells + cd.n_dropped_cells == adata.n_obs and cd.n_genes == adata.n_vars
    assert (np.diff(cd.X.indptr) > 0).all()  # no empty cells left
    original = adata.X if layer is None else adata.layers[layer]
    original = original.toarray() if sp.issparse(original) else original
    np.testing.assert_array_equal(cd.X.toarray(), original[cd.kept].astype(np.float32))
    if require_counts:
        assert cd.is_counts and (cd.X.data >= 0).all() and (cd.X.data == np.round(cd.X.data)).all()
    if use_condition:
        assert cd.conditions.min() >= 0 and cd.conditions.max() < len(cd.condition_levels)


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(case=anndatas(), use_condition=st.booleans())
def test_backed_file_gives_the_in_memory_result(tmp_path_factory, case, use_condition):
    """The same matrix read backed from disk (X stays on disk, read in row chunks) gives the same CountData,
    or the same kind of clear error, as in memory."""
    adata, layer = case
    if layer is not None:  # backed mode streams X only; layers are read into memory by anndata anyway
        return
    path = tmp_path_factory.mktemp("backed") / "x.h5ad"
    adata.write_h5ad(path)
    key = "label" if use_condition else None
    in_memory = result_or_input_error(adata, lambda: prepare_counts(adata, condition_key=key))
    backed = ad.read_h5ad(path, backed="r")
    try:
        on_disk = result_or_input_error(backed, lambda: prepare_counts(backed, condition_key=key))
    finally:
        backed.file.close()
    assert (in_memory is None) == (on_disk is None)
    if in_memory is not None:
        np.testing.assert_array_equal(on_disk.X.toarray(), in_memory.X.toarray())
        np.testing.assert_array_equal(on_disk.kept, in_memory.kept)
        assert on_disk.condition_levels == in_memory.condition_levels
