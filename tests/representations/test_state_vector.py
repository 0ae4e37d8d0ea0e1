import numpy as np
import pytest
import scipy.sparse as sp
import torch

from exprflow.representations import (
    LogNormalLibrary,
    StateVector,
    StateVectorConfig,
    log1p_to_counts,
    log_normalise,
)


def test_log_normalise_matches_formula(counts_adata):
    X = counts_adata.X
    dense = X.toarray()
    expected = np.log1p(dense / dense.sum(1, keepdims=True) * 1e4)
    np.testing.assert_allclose(log_normalise(X), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(log_normalise(X, is_counts=False), np.log1p(dense), rtol=1e-6)


def test_standardised_train_state_has_zero_mean_unit_std(counts_adata):
    rep = StateVector().fit(counts_adata.X, chunk_size=17)  # chunking must not change the statistics
    x = rep.encode(counts_adata.X).numpy()
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(x.std(0), 1, atol=1e-3)


def test_torch_and_numpy_encodings_agree(counts_adata):
    rep = StateVector().fit(counts_adata.X)
    a = rep.encode(counts_adata.X)
    b = rep.encode(torch.from_numpy(counts_adata.X.toarray()))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_decode_inverts_encode_and_clips(counts_adata):
    rep = StateVector().fit(counts_adata.X)
    x = rep.encode(counts_adata.X)
    np.testing.assert_allclose(rep.decode_log1p(x), log_normalise(counts_adata.X), atol=1e-4)
    wild = rep.decode_log1p(torch.full_like(x, 50.0))
    assert np.all(wild <= rep.max + 1e-6)
    assert np.all(rep.decode_log1p(torch.full_like(x, -50.0)) == 0)


def test_all_zero_gene_has_finite_statistics():
    X = sp.csr_matrix(np.array([[1, 0, 3], [2, 0, 1], [5, 0, 0]], dtype=np.float32))
    rep = StateVector().fit(X)
    x = rep.encode(X)
    assert torch.isfinite(x).all()
    assert rep.std[1] > 0


def test_unstandardised_config(counts_adata):
    rep = StateVector(StateVectorConfig(standardize=False)).fit(counts_adata.X)
    np.testing.assert_allclose(rep.encode(counts_adata.X).numpy(), log_normalise(counts_adata.X), atol=1e-6)


def test_counts_roundtrip_recovers_real_counts(counts_adata):
    dense = counts_adata.X.toarray()
    y = log_normalise(dense)
    back = log1p_to_counts(y, dense.sum(1), method="round").toarray()
    np.testing.assert_array_equal(back, dense)


def test_poisson_counts_are_integers_with_expected_totals():
    rng = np.random.default_rng(0)
    y = np.log1p(rng.gamma(1.0, 5.0, size=(400, 30)))
    lib = np.full(400, 2000.0)
    c = log1p_to_counts(y, lib, method="poisson", rng=rng)
    assert c.dtype == np.int32 and sp.issparse(c)
    assert abs(c.sum(1).mean() - 2000) < 20


def test_zero_expression_row_gives_zero_counts_not_nan():
    c = log1p_to_counts(np.zeros((2, 5)), np.array([100.0, 100.0]))
    assert c.sum() == 0


def test_library_model_per_condition():
    rng = np.random.default_rng(1)
    codes = np.repeat([0, 1, 2], [500, 500, 3])
    lib = np.where(codes == 0, rng.lognormal(7, 0.2, codes.size), rng.lognormal(9, 0.2, codes.size))
    model = LogNormalLibrary().fit(lib, codes)
    s0 = model.sample(2000, np.zeros(2000, int), rng)
    s1 = model.sample(2000, np.ones(2000, int), rng)
    assert abs(np.log(s0).mean() - 7) < 0.05 and abs(np.log(s1).mean() - 9) < 0.05
    assert 2 not in model.params  # too few cells: falls back to the pooled fit
    s2 = model.sample(50, np.full(50, 2), rng)
    assert np.all((s2 >= lib.min() - 1e-6) & (s2 <= lib.max() + 1e-6))
    restored = LogNormalLibrary().load_state_dict(model.state_dict())
    assert restored.params == model.params


def test_library_rejects_nonpositive():
    with pytest.raises(ValueError, match="positive"):
        LogNormalLibrary().fit(np.array([0.0, 10.0]))


def test_stochastic_round_keeps_the_mean_with_little_extra_noise():
    rng = np.random.default_rng(2)
    y = np.log1p(np.full((20000, 3), [0.3, 2.5, 40.0]))
    lib = np.full(20000, 1e4)  # L * p == expm1(y) * L / sum = fixed expected counts
    c = log1p_to_counts(y, lib, method="stochastic_round", rng=rng).toarray()
    expected = np.expm1(y[0]) / np.expm1(y[0]).sum() * 1e4
    np.testing.assert_allclose(c.mean(0), expected, rtol=0.01)
    assert np.all(c.var(0) <= 0.25 + 1e-2)  # Bernoulli remainder only; Poisson would add var = mean
    assert np.all(np.isin(c - np.floor(expected), [0, 1]))
