"""Time fields in the data layer: numeric / categorical times, bins, lineage weights, clear errors."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from shared_data import shared_path
from synthetic import make_counts_adata

from exprflow.data.timecourse import prepare_timecourse, quantile_bins, time_values
from exprflow.errors import ExprflowInputError



def timed(times, seed=0) -> ad.AnnData:
    adata = make_counts_adata(n_cells=len(times), n_genes=20, seed=seed)
    adata.obs["t"] = times
    return adata


def test_numeric_times_give_sorted_levels_and_codes():
    course = prepare_timecourse(timed([5.0, 0.0, 2.5, 5.0, 0.0, 2.5]), "t")
    np.testing.assert_array_equal(course.time_levels, [0.0, 2.5, 5.0])
    np.testing.assert_array_equal(course.time_codes, [2, 0, 1, 2, 0, 1])
    assert course.time_labels == ["0", "2.5", "5"] and course.weights is None
    np.testing.assert_array_equal(course.cells_at(1), [2, 5])


def test_numeric_categorical_reads_as_numbers():
    # hsmm stores Hours as an *unordered* categorical of integers: its order is numeric, not textual
    times = pd.Categorical([24, 0, 48, 72, 0, 24], categories=[0, 24, 48, 72])
    course = prepare_timecourse(timed(times), "t")
    np.testing.assert_array_equal(course.time_levels, [0, 24, 48, 72])


def test_ordered_text_categories_follow_their_order():
    times = pd.Categorical(["late", "early", "mid", "late"], categories=["early", "mid", "late"], ordered=True)
    course = prepare_timecourse(timed(times), "t")
    assert course.time_labels == ["early", "mid", "late"]
    np.testing.assert_array_equal(course.time_codes, [2, 0, 1, 2])


@pytest.mark.parametrize("times, message", [
    (pd.Categorical(["b", "a", "b", "a"]), "unordered categorical"),
    ([1.0, np.nan, 2.0, 1.0], "missing"),
    ([3.0, 3.0, 3.0, 3.0], "single time point"),
    (["x", "y", "x", "y"], "not times"),
])
def test_invalid_times_raise_clear_errors(times, message):
    with pytest.raises(ExprflowInputError, match=message):
        prepare_timecourse(timed(times), "t")


def test_missing_key_lists_columns():
    with pytest.raises(ExprflowInputError, match="not a column of adata.obs.*cell_type"):
        time_values(timed([0.0, 1.0]), "Hours")


def test_quantile_bins_are_ordered_and_balanced():
    values = np.random.default_rng(0).random(103)
    bins = quantile_bins(values, 4)
    counts = np.bincount(bins)
    assert counts.max() - counts.min() <= 1
    means = [values[bins == k].mean() for k in range(4)]
    assert means == sorted(means) and values[bins == 0].max() <= values[bins == 1].min()
    with pytest.raises(ExprflowInputError, match="n_bins"):
        quantile_bins(values, 1)


def test_lineage_weights_filter_cells_and_user_adata_untouched():
    path = shared_path("paul15_pseudotime.h5ad")
    adata = ad.read_h5ad(path)[:400].copy()
    before = adata.copy()
    course = prepare_timecourse(adata, "pseudotime_lineage1", weight_key="weight_lineage1", n_bins=4)
    on = adata.obs["weight_lineage1"].to_numpy() >= 0.5
    assert course.data.n_cells == on.sum() and (course.weights >= 0.5).all()
    assert course.time_labels == ["bin0", "bin1", "bin2", "bin3"]
    assert np.all(np.diff(course.time_levels) > 0)
    # bin levels are the mean pseudotime of their cells
    pt = adata.obs["pseudotime_lineage1"].to_numpy()[on]
    np.testing.assert_allclose(course.time_levels[0], pt[course.time_codes == 0].mean())
    assert (adata.X != before.X).nnz == 0 and adata.obs.equals(before.obs)
    with pytest.raises(ExprflowInputError, match="not a column"):
        prepare_timecourse(adata, "pseudotime_lineage1", weight_key="weight_lineage9")
