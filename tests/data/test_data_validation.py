"""One test per validation error of ``prepare_counts``: the message says what is wrong and how to fix
it, and the user's AnnData is left exactly as it was."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from data_helpers import snapshot

from exprflow.data import prepare_counts
from exprflow.errors import ExprflowInputError


def fails(adata: ad.AnnData, **kwargs) -> str:
    """Run prepare_counts expecting an ExprflowInputError; check the AnnData is unchanged; return the message."""
    check = snapshot(adata)
    with pytest.raises(ExprflowInputError) as info:
        prepare_counts(adata, **kwargs)
    check()
    return str(info.value)


def with_value(adata: ad.AnnData, row: int, col: int, value: float, layer: str | None = None) -> ad.AnnData:
    """A copy of ``adata`` with one entry set (in X or a layer), kept sparse."""
    adata = adata.copy()
    matrix = (adata.X if layer is None else adata.layers[layer]).astype(np.float64).tolil()
    matrix[row, col] = value
    if layer is None:
        adata.X = matrix.tocsr()
    else:
        adata.layers[layer] = matrix.tocsr()
    return adata


def test_missing_layer_lists_available_layers(counts_adata):
    counts_adata.layers["counts"] = counts_adata.X.copy()
    counts_adata.layers["spliced"] = counts_adata.X.copy()
    msg = fails(counts_adata, layer="raw")
    assert "'raw'" in msg and "not found" in msg
    assert "'counts'" in msg and "'spliced'" in msg
    assert "layer=None" in msg and "adata.X" in msg


def test_missing_layer_when_there_are_none(counts_adata):
    msg = fails(counts_adata, layer="counts")
    assert "'counts'" in msg and "none" in msg and "layer=None" in msg


def test_x_is_none_points_to_layers(counts_adata):
    adata = ad.AnnData(obs=counts_adata.obs, var=counts_adata.var, layers={"counts": counts_adata.X.copy()})
    msg = fails(adata)
    assert "adata.X is empty (None)" in msg and "layer='counts'" in msg


@pytest.mark.parametrize("shape", [(0, 5), (4, 0)])
def test_empty_matrix(shape):
    adata = ad.AnnData(
        X=sp.csr_matrix(shape, dtype=np.float32),
        obs=pd.DataFrame(index=[f"c{i}" for i in range(shape[0])]),
        var=pd.DataFrame(index=[f"g{j}" for j in range(shape[1])]),
    )
    msg = fails(adata)
    assert f"{shape[0]} cells x {shape[1]} genes" in msg and "empty" in msg and "filter" in msg


def test_nan_reports_count_layer_and_example(counts_adata):
    counts_adata.layers["counts"] = counts_adata.X.copy()
    adata = with_value(counts_adata, 7, 3, np.nan, layer="counts")
    adata = with_value(adata, 9, 4, np.nan, layer="counts")
    msg = fails(adata, layer="counts")
    assert "adata.layers['counts']" in msg
    assert "2 non-finite value(s) (2 NaN, 0 infinite" in msg
    assert "cell 'cell7'" in msg and "gene 'gene3'" in msg and "nan" in msg


def test_inf_rejected_even_without_require_counts(counts_adata):
    adata = with_value(counts_adata, 2, 0, -np.inf)
    msg = fails(adata, require_counts=False)
    assert "adata.X" in msg and "1 non-finite" in msg and "1 infinite" in msg
    assert "cell 'cell2'" in msg and "gene 'gene0'" in msg and "-inf" in msg


def test_nan_in_dense_matrix_is_found(counts_adata):
    adata = counts_adata.copy()
    dense = adata.X.toarray()
    dense[5, 6] = np.nan  # NaN in a dense matrix, possibly where the count was zero
    adata.X = dense
    msg = fails(adata)
    assert "1 non-finite" in msg and "cell 'cell5'" in msg and "gene 'gene6'" in msg


def test_float32_overflow_is_reported_as_non_finite(counts_adata):
    adata = with_value(counts_adata, 1, 1, 1e300)
    msg = fails(adata)
    assert "beyond float32 range" in msg and "cell 'cell1'" in msg


def test_negative_values_show_value_and_suggest_counts_layer(counts_adata):
    adata = with_value(counts_adata, 11, 5, -1.5)
    msg = fails(adata)
    assert "adata.X does not hold raw counts" in msg and "negative" in msg
    assert "-1.5 at cell 'cell11', gene 'gene5'" in msg
    assert "adata.layers['counts']" in msg and "layer='counts'" in msg and "require_counts=False" in msg


def test_non_integer_values_show_value_and_suggest_fix(counts_adata):
    adata = with_value(counts_adata, 3, 8, 2.5)
    msg = fails(adata)
    assert "non-integer" in msg and "2.5 at cell 'cell3', gene 'gene8'" in msg
    assert "layer='counts'" in msg and "require_counts=False" in msg


def test_log_normalised_x_with_counts_layer_points_to_it(counts_adata):
    adata = counts_adata.copy()
    adata.layers["counts"] = adata.X.copy()
    adata.X = adata.X.copy()
    adata.X.data = np.log1p(adata.X.data)
    msg = fails(adata)
    assert "has a 'counts' layer: pass layer='counts'" in msg
    cd = prepare_counts(adata, layer="counts")  # the suggested fix works
    assert cd.is_counts and cd.layer == "counts"


def test_integer_tolerance(counts_adata):
    near = with_value(counts_adata, 0, 0, 3.0 + 1e-8)
    assert prepare_counts(near).is_counts
    off = with_value(counts_adata, 0, 0, 3.0 + 1e-4)
    assert "non-integer" in fails(off)


def test_require_counts_false_allows_negative_and_fractional(counts_adata):
    adata = with_value(counts_adata, 0, 0, -0.75)
    adata = with_value(adata, 1, 1, 0.5)
    check = snapshot(adata)
    cd = prepare_counts(adata, require_counts=False)
    check()
    assert not cd.is_counts
    assert cd.X[0, 0] == np.float32(-0.75) and cd.X[1, 1] == np.float32(0.5)


def test_non_numeric_matrix(counts_adata):
    adata = ad.AnnData(X=np.array([["1", "2"], ["3", "4"]], dtype=object))
    msg = fails(adata)
    assert "dtype object" in msg and "numeric" in msg


def test_duplicated_var_names(counts_adata):
    adata = counts_adata.copy()
    adata.var_names = ["TP53", "ACTB"] * 2 + [f"gene{j}" for j in range(4, adata.n_vars)]
    msg = fails(adata)
    assert "2 duplicated gene name(s)" in msg and "'TP53'" in msg and "'ACTB'" in msg
    assert "adata.var_names_make_unique()" in msg


def test_non_string_var_names(counts_adata):
    adata = counts_adata.copy()
    with pytest.warns(UserWarning):  # anndata itself warns about non-str names
        adata.var_names = pd.Index(np.arange(adata.n_vars))
    msg = fails(adata)
    assert "must be strings" in msg and "int" in msg
    assert "adata.var_names = adata.var_names.astype(str)" in msg


def test_categorical_var_names_are_fine(counts_adata):
    adata = counts_adata.copy()
    with pytest.warns(UserWarning):
        adata.var_names = pd.CategoricalIndex(counts_adata.var_names)
    check = snapshot(adata)
    cd = prepare_counts(adata)
    check()
    assert cd.var_names == list(counts_adata.var_names) and all(type(v) is str for v in cd.var_names)


def test_missing_condition_key_lists_columns(counts_adata):
    counts_adata.obs["batch"] = "b1"
    msg = fails(counts_adata, condition_key="celltype")
    assert "'celltype'" in msg and "'cell_type'" in msg and "'batch'" in msg
    assert "condition_key=None" in msg


def test_condition_with_missing_values(counts_adata):
    adata = counts_adata.copy()
    labels = adata.obs["cell_type"].astype(object)
    labels.iloc[[4, 10, 20]] = None
    adata.obs["cell_type"] = pd.Categorical(labels)
    msg = fails(adata, condition_key="cell_type")
    assert "3 of 120 cells" in msg and "cell 'cell4'" in msg
    assert "adata[adata.obs['cell_type'].notna()].copy()" in msg


def test_condition_values_that_print_the_same(counts_adata):
    adata = counts_adata.copy()
    adata.obs["mixed"] = pd.Series([1, "1"] * 60, index=adata.obs_names, dtype=object)
    msg = fails(adata, condition_key="mixed")
    assert "print the same" in msg and ".astype(str)" in msg


def test_single_level_is_allowed_with_warning(counts_adata, caplog):
    counts_adata.obs["one"] = "all"
    with caplog.at_level(logging.WARNING, logger="exprflow.data"):
        cd = prepare_counts(counts_adata, condition_key="one")
    assert cd.condition_levels == ["all"] and set(cd.conditions) == {0}
    assert "single level" in caplog.text


def test_all_cells_zero(counts_adata):
    adata = counts_adata.copy()
    adata.X = sp.csr_matrix(adata.shape, dtype=np.float32)
    msg = fails(adata)
    assert "All 120 cells" in msg and "zero total counts" in msg and "layer=" in msg


def test_checks_come_before_values(counts_adata):
    """A missing layer is reported before anything reads the matrix, names before values."""
    adata = with_value(counts_adata, 0, 0, np.nan)
    adata.var_names = ["g"] * adata.n_vars
    assert "layer" in fails(adata, layer="nope")
    assert "duplicated" in fails(adata)
