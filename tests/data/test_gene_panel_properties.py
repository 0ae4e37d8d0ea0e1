"""Property test: a gene-set model read on a random gene panel (subsets, shuffles, unknown and repeated
names, bad values) gives a finite embedding or an ExprflowInputError, never another exception, never
silent NaN, and never modifies the user's AnnData. Where it succeeds, the result does not depend on the
order of the panel's genes."""

from __future__ import annotations

import functools
import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from data_helpers import result_or_input_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


N_GENES = 24
MODEL_GENES = [f"g{i}" for i in range(N_GENES)]
UNKNOWN = [f"other{i}" for i in range(4)]


@functools.lru_cache(maxsize=1)
def trained_model():
    """A small DeepSets StateFlow on synthetic counts (built once for all examples)."""
    from synthetic import make_counts_adata

    from exprflow.models import StateFlow

    adata = make_counts_adata(n_cells=80, n_genes=N_GENES, seed=7)
    adata.var_names = MODEL_GENES
    model = StateFlow(adata, backbone="deepsets", backbone_kwargs={"hidden": 8, "depth": 1, "phi_depth": 1,
                                                                     "time_dim": 8})
    logging.disable(logging.WARNING)
    try:
        model.train(max_steps=5, batch_size=16, progress_bar=False)
    finally:
        logging.disable(logging.NOTSET)
    return model


@st.composite
def panels(draw):
    unique = draw(st.sampled_from([True, True, True, False]))  # repeated names are rarer in real files
    names = draw(st.lists(st.sampled_from(MODEL_GENES + UNKNOWN), min_size=1, max_size=12, unique=unique))
    n_cells = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    X = rng.poisson(2.0, size=(n_cells, len(names))).astype(np.float32)
    defect = draw(st.sampled_from(["none", "none", "nan", "negative", "fraction", "zero_cell"]))
    i, j = rng.integers(n_cells), rng.integers(len(names))
    if defect == "zero_cell":
        X[i] = 0
    elif defect != "none":
        X[i, j] = {"nan": np.nan, "negative": -1.0, "fraction": 0.5}[defect]
    if draw(st.booleans()):
        X = sp.csr_matrix(X)
    var = pd.DataFrame(index=pd.Index(names, dtype=object))
    adata = ad.AnnData(X=X, var=var, obs=pd.DataFrame(index=[f"c{k}" for k in range(n_cells)]))
    if draw(st.booleans()):
        adata.var_names = pd.CategoricalIndex(names)  # public files carry categorical var indexes
    return adata


@pytest.mark.filterwarnings("ignore::UserWarning")  # anndata: "Variable names are not unique"
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(adata=panels(), on_unknown=st.sampled_from(["raise", "drop"]))
def test_embedding_on_any_panel_is_finite_or_a_clear_error(adata, on_unknown):
    model = trained_model()
    emb = result_or_input_error(adata, lambda: model.get_cell_embedding(adata, on_unknown=on_unknown))
    if emb is None:
        return
    names = list(map(str, adata.var_names))
    assert len(set(names)) == len(names) and set(names) & set(MODEL_GENES)
    assert on_unknown == "drop" or not set(names) & set(UNKNOWN)
    assert emb.shape == (adata.n_obs, 8) and np.isfinite(emb).all()
    order = np.argsort(names)[::-1]  # the same cells with the panel's genes in another order
    np.testing.assert_allclose(model.get_cell_embedding(adata[:, order].copy(), on_unknown=on_unknown), emb,
                               rtol=1e-4, atol=1e-5)
