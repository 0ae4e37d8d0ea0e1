"""Perturbation metrics: closed forms of R^2 of means, LFC Pearson, Wilcoxon DE genes, energy to floor."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import mannwhitneyu

from exprflow.errors import ExprflowInputError
from exprflow.metrics.perturbation import (
    de_genes,
    energy_to_floor,
    lfc_pearson,
    mean_expression,
    perturbation_metrics,
    r2_identity,
    r2_of_means,
    wilcoxon_z,
)


def _arms(seed=0, n=60, genes=40, up=(0, 1, 2, 3, 4)):
    rng = np.random.default_rng(seed)
    base = rng.gamma(1.0, 2.0, size=genes) + 0.2
    ctrl = rng.poisson(base, size=(n, genes))
    boost = base.copy()
    boost[list(up)] *= 8.0
    stim = rng.poisson(boost, size=(n + 10, genes))
    return sp.csr_matrix(ctrl.astype(np.float32)), sp.csr_matrix(stim.astype(np.float32))


def test_perfect_prediction_scores_one():
    ctrl, stim = _arms()
    m = perturbation_metrics(stim, stim, ctrl)
    for key in ("r2_mean_all", "r2_mean_top40", "r2_identity_all", "lfc_pearson_all", "lfc_pearson_top40"):
        assert m[key] == pytest.approx(1.0)


def test_constant_shift_closed_forms():
    rng = np.random.default_rng(1)
    real, ctrl = rng.normal(2, 1, 50), rng.normal(2, 1, 50)
    pred = real + 0.7  # a constant offset on every gene's mean
    assert r2_of_means(pred, real) == pytest.approx(1.0)  # scGen's R^2 ignores offsets...
    assert lfc_pearson(pred, real, ctrl) == pytest.approx(1.0)
    # ...the identity-line R^2 does not: 1 - n c^2 / SS_tot
    expected = 1 - 50 * 0.7**2 / np.sum((real - real.mean()) ** 2)
    assert r2_identity(pred, real) == pytest.approx(expected)
    assert r2_of_means(2 * real, real) == pytest.approx(1.0)  # nor a common scale


def test_identity_prediction_has_undefined_lfc_pearson():
    ctrl, stim = _arms()
    m = perturbation_metrics(ctrl, stim, ctrl)
    assert m["lfc_pearson_all"] is None and m["r2_mean_all"] < 1.0


def test_wilcoxon_z_matches_scipy_and_finds_up_genes():
    ctrl, stim = _arms(up=(3, 7, 11))
    z = wilcoxon_z(stim, ctrl)
    from exprflow.metrics.reference import normalise_rows

    a, b = normalise_rows(stim).toarray(), normalise_rows(ctrl).toarray()
    n1, n2 = a.shape[0], b.shape[0]
    u = mannwhitneyu(a[:, 5], b[:, 5]).statistic
    assert z[5] == pytest.approx((u - n1 * n2 / 2) / np.sqrt(n1 * n2 * (n1 + n2 + 1) / 12))
    assert set(de_genes(stim, ctrl, n_top=3)) == {3, 7, 11}
    assert set(de_genes(stim, ctrl, n_top=3, direction="both")) == {3, 7, 11}


def test_mean_expression_is_log1p_normalised():
    x = np.array([[1.0, 3.0], [0.0, 10.0]])
    expected = np.log1p(x / x.sum(1, keepdims=True) * 1e4).mean(0)
    assert np.allclose(mean_expression(x), expected)


def test_energy_ratio_separates_right_from_wrong():
    ctrl, stim = _arms(n=80)
    train = sp.vstack([ctrl, stim])
    good = energy_to_floor(stim, stim, train, seed=0)["energy_ratio"]
    bad = energy_to_floor(ctrl, stim, train, seed=0)["energy_ratio"]
    assert bad > 5 * good


def test_mismatched_genes_is_a_clear_error():
    ctrl, stim = _arms()
    with pytest.raises(ExprflowInputError, match="same genes"):
        perturbation_metrics(stim[:, :10], stim, ctrl)


# ----------------------------------------------------------------- field metrics (cell-eval's definitions)
from exprflow.metrics.perturbation import (  # noqa: E402
    cell_eval_anndata,
    de_direction_agreement,
    de_overlap,
    de_table,
    discrimination_score,
    field_metrics,
)
from exprflow.metrics.reference import normalise_rows  # noqa: E402


def test_de_table_is_mann_whitney_bh_and_geometric_mean_log2fc():
    ctrl, stim = _arms(seed=3)
    de = de_table(stim, ctrl)
    a, b = normalise_rows(stim).toarray(), normalise_rows(ctrl).toarray()
    p = np.array([mannwhitneyu(a[:, g], b[:, g], method="asymptotic").pvalue for g in range(a.shape[1])])
    order = np.argsort(p)
    bh = np.minimum.accumulate((p[order] * p.size / np.arange(1, p.size + 1))[::-1])[::-1]
    expected = np.empty_like(p)
    expected[order] = np.minimum(bh, 1)
    assert np.allclose(de["fdr"], expected)
    assert np.allclose(de["log2fc"], np.log2(np.expm1(a.mean(0)) / np.expm1(b.mean(0))))
    assert np.all(de["fdr"][:5] < 0.05)  # the boosted genes


def test_de_overlap_and_direction_closed_forms():
    real = {"log2fc": np.array([3.0, -2.0, 1.0, 0.5, 0.1]), "fdr": np.array([0.01, 0.01, 0.01, 0.5, 0.01])}
    pred = {"log2fc": np.array([0.2, 2.5, -1.0, 4.0, 0.0]), "fdr": np.array([0.01, 0.01, 0.9, 0.01, 0.9])}
    # real significant by |lfc|: 0, 1, 2, 4; pred significant by |lfc|: 3, 1, 0
    assert de_overlap(real, pred, None) == pytest.approx(2 / 4)
    assert de_overlap(real, pred, 2) == pytest.approx(1 / 2)  # {0, 1} vs {3, 1}
    assert de_direction_agreement(real, pred) == pytest.approx(1 / 4)  # only gene 0 keeps its sign
    nothing = {"log2fc": np.zeros(5), "fdr": np.ones(5)}
    assert de_overlap(real, nothing, None) == 0.0 and de_direction_agreement(nothing, pred) is None


def test_discrimination_score_ranks():
    real = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]])
    assert np.allclose(discrimination_score(real, real), 1.0)
    pred = np.array([[5.0, 5.0], [1.1, 0.0], [0.9, 0.1]])  # row 0 closest to real 2, row 2 closest to real 1
    assert np.allclose(discrimination_score(pred, real), [1 - 2 / 3, 1.0, 1 - 2 / 3])
    with pytest.raises(ExprflowInputError, match="same 2-D shape"):
        discrimination_score(pred[:2], real)


def test_field_metrics_of_the_real_cells_are_perfect_and_no_change_is_not():
    ctrl, stim = _arms(seed=4)
    m = field_metrics(stim, stim, ctrl, n_top=10, de_k=10)
    assert m["pearson_delta_all"] == pytest.approx(1.0) and m["pearson_delta_top10"] == pytest.approx(1.0)
    assert m["mae"] == 0.0 and m["de_overlap_at_N"] == 1.0 and m["de_direction_agreement"] == 1.0
    assert m["n_de_real"] == m["n_de_pred"] >= 5
    none = field_metrics(ctrl, stim, ctrl, n_top=10, de_k=10)
    assert none["pearson_delta_all"] is None and none["de_overlap_at_N"] == 0.0 and none["mae"] > 0
    assert np.allclose(none["effect"], 0.0)


def test_cell_eval_layout():
    ctrl, stim = _arms(seed=5)
    out = cell_eval_anndata({"ctrl": ctrl, "stim": stim}, [f"g{i}" for i in range(ctrl.shape[1])])
    assert list(out.obs["target"].value_counts().sort_index()) == [ctrl.shape[0], stim.shape[0]]
    assert np.allclose(out.X[: ctrl.shape[0]].toarray(), normalise_rows(ctrl).toarray(), atol=1e-6)
