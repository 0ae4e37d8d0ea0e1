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
