"""evaluate(): result layout, floor and ratios, conditional metrics, validation, and input safety."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from metrics_helpers import make_counts
from sklearn.model_selection import train_test_split

from exprflow.errors import ExprflowInputError
from exprflow.metrics import PROTOCOL_VERSION, evaluate, format_report

METRICS = ["w2", "mmd", "energy", "c2st_knn", "c2st_lr", "coverage", "dcr", "pearson_mean", "pearson_var",
           "pearson_zero_frac", "library_size_mad", "library_size_rel_diff"]


def split3(adata: ad.AnnData, seed: int = 0) -> tuple[ad.AnnData, ad.AnnData, ad.AnnData]:
    """60 / 20 / 20 stratified split into (train, test, held-out real cells used as 'generated')."""
    idx = np.arange(adata.n_obs)
    labels = adata.obs["cell_type"].to_numpy()
    train, rest = train_test_split(idx, test_size=0.4, stratify=labels, random_state=seed)
    test, gen = train_test_split(rest, test_size=0.5, stratify=labels[rest], random_state=seed)
    return adata[train].copy(), adata[test].copy(), adata[gen].copy()


@pytest.fixture(scope="module")
def parts():
    return split3(make_counts(n_cells=600, n_genes=50, n_types=3, seed=0))


@pytest.fixture(scope="module")
def result(parts):
    train, test, gen = parts
    return evaluate(test, gen, train)


@pytest.fixture(scope="module")
def conditional(parts):
    train, test, gen = parts
    return evaluate(test, gen, train, condition_key="cell_type")


def test_result_layout_and_json(result):
    assert result["protocol_version"] == PROTOCOL_VERSION == 1
    assert (result["n_test"], result["n_generated"], result["n_train"], result["seed"]) == (120, 120, 360, 0)
    assert list(result["metrics"]) == METRICS and list(result["floor"]) == METRICS
    assert set(result["ratio_to_floor"]) == {"w2", "mmd", "energy", "coverage"}
    assert isinstance(result["notes"], list)
    assert "per_condition" not in result and "label_accuracy" not in result["metrics"]
    text = json.dumps(result, allow_nan=False)
    assert json.loads(text) == result
    assert all(type(v) is float for v in result["metrics"].values())


def test_ratios_are_metric_over_floor_and_near_one_for_real_cells(result):
    for name, ratio in result["ratio_to_floor"].items():
        assert ratio == pytest.approx(result["metrics"][name] / result["floor"][name])
    assert 0.8 < result["ratio_to_floor"]["w2"] < 1.25
    assert 0.8 < result["ratio_to_floor"]["coverage"] < 1.25
    assert 0.8 < result["metrics"]["dcr"] < 1.25 and 0.8 < result["floor"]["dcr"] < 1.25


def test_bad_generator_scores_far_above_floor(parts):
    train, test, gen = parts
    shuffled = gen.copy()
    shuffled.X = sp.csr_matrix(shuffled.X.toarray()[:, np.random.default_rng(0).permutation(gen.n_vars)])
    bad = evaluate(test, shuffled, train)
    assert bad["ratio_to_floor"]["energy"] > 5
    assert bad["metrics"]["c2st_knn"] > 0.95
    assert bad["metrics"]["pearson_mean"] < 0.8


def test_copies_of_train_cells_are_flagged_by_dcr(parts):
    train, test, _ = parts
    copies = train[:120].copy()
    assert evaluate(test, copies, train, floor=False)["metrics"]["dcr"] < 0.2


def test_same_seed_same_result_and_floor_false(parts, result):
    train, test, gen = parts
    assert evaluate(test, gen, train) == result
    no_floor = evaluate(test, gen, train, floor=False)
    assert no_floor["floor"] == {} and no_floor["ratio_to_floor"] == {}
    assert no_floor["metrics"] == result["metrics"]  # the floor does not change the model's row


def test_inputs_are_unchanged(parts):
    train, test, gen = parts
    copies = [a.copy() for a in (train, test, gen)]
    evaluate(test, gen[:, ::-1], train, condition_key="cell_type")
    for before, after in zip(copies, (train, test, gen)):
        assert (before.X != after.X).nnz == 0
        pd.testing.assert_frame_equal(before.obs, after.obs)
        assert list(before.var_names) == list(after.var_names)


def test_gene_reorder_of_generated_is_handled(parts, result):
    train, test, gen = parts
    reordered = evaluate(test, gen[:, ::-1].copy(), train)
    assert reordered["metrics"] == pytest.approx(result["metrics"])
    assert any("reordered" in note for note in reordered["notes"])


def test_unequal_sizes_are_subsampled_and_noted(parts):
    train, test, gen = parts
    out = evaluate(test, gen[:80].copy(), train)
    assert out["n_compared"] == 80 and out["n_generated"] == 80
    assert any("subsampled" in note for note in out["notes"])


def test_all_zero_gene_gives_no_nan(parts):
    train, test, gen = (a.copy() for a in parts)
    for a in (train, test, gen):
        x = a.X.toarray()
        x[:, 3] = 0
        a.X = sp.csr_matrix(x)
    out = evaluate(test, gen, train, condition_key="cell_type")
    json.dumps(out, allow_nan=False)
    assert all(v is not None for v in out["metrics"].values())


def test_non_count_data(parts):
    train, test, gen = (a.copy() for a in parts)
    for a in (train, test, gen):  # FPKM-like floats
        a.X = sp.csr_matrix(a.X.toarray() * 3.7)
    out = evaluate(test, gen, train, counts=False)
    assert out["metrics"]["library_size_mad"] is None
    assert "count data" in out["unavailable"]["metrics"]["library_size_mad"]
    assert out["metrics"]["w2"] is not None and out["counts"] is False


def test_layer_is_used_for_real_data(parts, result):
    train, test, gen = (a.copy() for a in parts)
    for a in (train, test):
        a.layers["counts"] = a.X.copy()
        a.X = sp.csr_matrix(np.log1p(a.X.toarray()))
    assert evaluate(test, gen, train, layer="counts")["metrics"] == pytest.approx(result["metrics"])


def test_conditional_averages_levels_with_enough_test_cells(parts):
    train, test, gen = (a.copy() for a in parts)
    labels = test.obs["cell_type"].astype(str).to_numpy()
    labels[:12] = "rare"  # 12 test cells: below the 20-cell threshold
    test.obs["cell_type"] = pd.Categorical(labels)
    out = evaluate(test, gen, train, condition_key="cell_type")
    assert set(out["per_condition"]) == {"type0", "type1", "type2"}
    assert any("'rare' skipped" in note for note in out["notes"])
    for name in METRICS:
        expected = np.mean([out["per_condition"][level][name] for level in out["per_condition"]])
        assert out["metrics"][name] == pytest.approx(expected)
        expected_floor = np.mean([out["per_condition_floor"][level][name] for level in out["per_condition"]])
        assert out["floor"][name] == pytest.approx(expected_floor)
    n = out["per_condition_n"]["type0"]
    assert n["n_test"] == (test.obs["cell_type"] == "type0").sum()


def test_label_accuracy_high_for_true_labels_and_chance_for_shuffled(parts, conditional):
    train, test, gen = parts
    assert conditional["metrics"]["label_accuracy"] > 0.9
    assert conditional["floor"]["label_accuracy"] > 0.9
    shuffled = gen.copy()
    shuffled.obs["cell_type"] = np.random.default_rng(0).permutation(shuffled.obs["cell_type"].to_numpy())
    out = evaluate(test, shuffled, train, condition_key="cell_type", floor=False)
    assert out["metrics"]["label_accuracy"] < 0.55  # 3 balanced levels: chance is 1/3
    json.dumps(conditional, allow_nan=False)


def test_format_report(conditional):
    text = format_report(conditional)
    assert "| metric | model | floor | ratio |" in text
    assert "| w2 |" in text and "| label_accuracy |" in text
    assert "Per condition" in text and "type1" in text


# ---- validation -------------------------------------------------------------------------------


def test_error_on_different_genes(parts):
    train, test, gen = parts
    other = gen.copy()
    other.var_names = [f"other{i}" if i < 3 else name for i, name in enumerate(gen.var_names)]
    with pytest.raises(ExprflowInputError, match=r"3 real_test genes are missing.*gene0"):
        evaluate(test, other, train)


def test_error_on_missing_condition_key(parts):
    train, test, gen = parts
    with pytest.raises(ExprflowInputError, match=r"'celltype'.*available columns.*cell_type"):
        evaluate(test, gen, train, condition_key="celltype")
    no_key = gen.copy()
    del no_key.obs["cell_type"]
    with pytest.raises(ExprflowInputError, match="generated.obs"):
        evaluate(test, no_key, train, condition_key="cell_type")


def test_error_on_too_few_cells(parts):
    train, test, gen = parts
    with pytest.raises(ExprflowInputError, match="generated has 5 cells.*at least 10"):
        evaluate(test, gen[:5].copy(), train)


def test_error_on_non_finite_generated(parts):
    train, test, gen = parts
    bad = gen.copy()
    x = bad.X.toarray()
    x[0, 0], x[1, 1] = np.nan, np.inf
    bad.X = x
    with pytest.raises(ExprflowInputError, match="generated holds 2 NaN or infinite"):
        evaluate(test, bad, train)


def test_error_on_missing_layer_and_negative_counts(parts):
    train, test, gen = parts
    with pytest.raises(ExprflowInputError, match="layer='counts'.*available"):
        evaluate(test, gen, train, layer="counts")
    negative = gen.copy()
    negative.X = -negative.X.toarray()
    with pytest.raises(ExprflowInputError, match="counts=False"):
        evaluate(test, negative, train)


def test_error_when_no_level_has_enough_cells(parts):
    train, test, gen = parts
    with pytest.raises(ExprflowInputError, match=r"No level of 'cell_type'.*real test cells per level"):
        evaluate(test[:30].copy(), gen, train, condition_key="cell_type")
