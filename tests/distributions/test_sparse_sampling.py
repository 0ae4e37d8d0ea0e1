"""The sparse count sampler draws the same distribution as the dense one: per-gene means, variances,
zero fractions and P(x = 1) against the exact values and against ``px.sample()``, for NB, ZINB and
Poisson over means 1e-3..400 and inverse dispersions 0.02..1e4 (both branches of the sparse stage)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from exprflow.distributions import NegativeBinomial, PoissonCounts, ZeroInflatedNegativeBinomial
from exprflow.distributions.sparse_sampling import sample_csr

N = 20_000
MUS = np.array([1e-3, 0.05, 0.5, 2.0, 10.0, 80.0, 400.0])
THETAS = np.array([0.02, 0.3, 1.5, 20.0, 1e4])
_M, _T = (a.ravel() for a in np.meshgrid(MUS, THETAS))


def _dist(name: str):
    mu = torch.tensor(_M, dtype=torch.float32).expand(N, -1)
    theta = torch.tensor(_T, dtype=torch.float32).expand(N, -1)
    if name == "nb":
        return NegativeBinomial(mu, theta)
    if name == "zinb":
        return ZeroInflatedNegativeBinomial(mu, theta, torch.full_like(mu, -0.7))
    return PoissonCounts(mu)


def _exact_p0_p1(name: str) -> tuple[np.ndarray, np.ndarray]:
    mu, theta = _M.astype(np.float64), _T.astype(np.float64)
    if name == "poisson":
        return np.exp(-mu), mu * np.exp(-mu)
    p0 = (theta / (theta + mu)) ** theta
    p1 = p0 * theta * mu / (theta + mu)
    if name == "zinb":
        pi = 1 / (1 + np.exp(0.7))
        return pi + (1 - pi) * p0, (1 - pi) * p1
    return p0, p1


def _z(observed, expected, var):
    return np.abs(observed - expected) / np.sqrt(np.maximum(var, 1e-12) / N)


@pytest.mark.parametrize("name", ["nb", "zinb", "poisson"])
def test_sparse_sampler_matches_exact_moments_and_dense_sampler(name):
    px = _dist(name)
    sparse = sample_csr(px, seed=3)
    assert sparse.has_canonical_format and sparse.dtype == np.int32 and sparse.shape == (N, len(_M))
    assert sparse.data.min() >= 1  # only non-zero entries are stored
    S = sparse.toarray().astype(np.float64)
    torch.manual_seed(4)
    D = px.sample().numpy().astype(np.float64)
    mean, var = px.mean[0].double().numpy(), px.variance[0].double().numpy()
    p0, p1 = _exact_p0_p1(name)
    # 5 standard errors: a correct sampler fails one of these ~1e-5 of the time; a wrong truncation,
    # a missing zero-inflation or an off-by-one in the inversion moves several columns by far more
    assert _z(S.mean(0), mean, var).max() < 5
    assert _z((S == 0).mean(0), p0, p0 * (1 - p0)).max() < 5
    assert _z((S == 1).mean(0), p1, p1 * (1 - p1)).max() < 5
    assert _z(S.mean(0), D.mean(0), 2 * var).max() < 5
    assert _z((S == 0).mean(0), (D == 0).mean(0), 2 * p0 * (1 - p0)).max() < 5
    # the variance: the sample variance's standard error from the fourth central moment of the sample
    m4 = ((S - S.mean(0)) ** 4).mean(0)
    assert _z(S.var(0), var, m4 - var**2).max() < 5


def test_same_seed_same_draw_and_empty_rows():
    mu = torch.zeros(5, 4)
    mu[2] = 3.0
    px = NegativeBinomial(mu, torch.ones(5, 4))
    a, b = sample_csr(px, seed=7), sample_csr(px, seed=7)
    assert (a != b).nnz == 0
    assert a[[0, 1, 3, 4]].nnz == 0  # zero means never give counts
    assert sample_csr(px, seed=8).shape == (5, 4)
