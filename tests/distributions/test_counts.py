"""Count likelihoods (NB, ZINB, Poisson): log_prob against scipy, numerics, sampling, moments, registry."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import digamma, gammaln, xlogy

from exprflow.distributions import LIKELIHOODS, NegativeBinomial, PoissonCounts, ZeroInflatedNegativeBinomial
from exprflow.distributions.likelihoods import CountLikelihood
from exprflow.errors import ExprflowInputError

F64 = torch.float64

X = [0.0, 1.0, 2.0, 10.0, 1000.0, 1e6]
MU = [1e-6, 0.1, 3.0, 1e3, 1e6]
THETA = [1e-4, 0.1, 1.0, 100.0, 1e5]
ZI = [-10.0, 0.0, 5.0]

RTOL, ATOL = 1e-8, 1e-12


def _grid(*axes: list[float]) -> list[np.ndarray]:
    """Flattened float64 Cartesian product of the axes, one array per axis."""
    return [np.asarray(col, dtype=np.float64) for col in zip(*itertools.product(*axes))]


def _t(a, dtype=F64, requires_grad: bool = False) -> torch.Tensor:
    return torch.tensor(np.asarray(a, dtype=np.float64), dtype=dtype, requires_grad=requires_grad)


def nb_logpmf_ref(x: np.ndarray, mu: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """scipy's ``nbinom.logpmf(x, n=theta, p=theta / (theta + mu))``.

    scipy evaluates ``log(1 - p)`` from ``p``, which loses ``eps / (1 - p)`` relative precision when
    ``1 - p = mu / (mu + theta)`` is tiny (1e-5 relative error at mu=1e-6, theta=1e5). There the
    reference is scipy's own formula with ``p`` and ``1 - p`` each computed directly (checked against
    scipy where scipy is well conditioned, below).
    """
    q = mu / (theta + mu)
    scipy_value = stats.nbinom.logpmf(x, theta, theta / (theta + mu))
    return np.where(q < 1e-6, _nb_logpmf_direct(x, mu, theta), scipy_value)


def _nb_logpmf_direct(x: np.ndarray, mu: np.ndarray, theta: np.ndarray) -> np.ndarray:
    log_p = -np.log1p(mu / theta)  # log(theta / (theta + mu)), exact also for p -> 1
    log_q = -np.log1p(theta / mu)  # log(mu / (theta + mu)), exact also for q -> 1
    return gammaln(x + theta) - gammaln(theta) - gammaln(x + 1) + theta * log_p + x * log_q


def zinb_logpmf_ref(x: np.ndarray, mu: np.ndarray, theta: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """``log(pi [x == 0] + (1 - pi) NB(x))`` in float64 with ``log pi = -softplus(-logit)``."""
    log_pi = -np.logaddexp(0.0, -logits)
    log_1m_pi = -np.logaddexp(0.0, logits)
    log_nb = log_1m_pi + nb_logpmf_ref(x, mu, theta)
    return np.where(x == 0, np.logaddexp(log_pi, log_nb), log_nb)


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    # np.testing rather than torch.testing.assert_close, whose first call costs ~1 s of imports
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    np.testing.assert_allclose(actual.detach().numpy(), expected.detach().numpy(), rtol=1e-12, atol=0)


def _all_dists(mu: torch.Tensor, theta: torch.Tensor, logits: torch.Tensor, **kw) -> dict[str, torch.distributions.Distribution]:
    return {
        "nb": NegativeBinomial(mu, theta, **kw),
        "zinb": ZeroInflatedNegativeBinomial(mu, theta, logits, **kw),
        "poisson": PoissonCounts(mu, **kw),
    }


# ----------------------------------------------------------------------------------------------------
# 1. log_prob against scipy (float64)
# ----------------------------------------------------------------------------------------------------


def test_nb_reference_fallback_agrees_with_scipy_where_scipy_is_well_conditioned() -> None:
    x, mu, theta = _grid(X, MU, THETA)
    q = mu / (mu + theta)
    ok = q >= 1e-6
    scipy_value = stats.nbinom.logpmf(x, theta, theta / (theta + mu))
    np.testing.assert_allclose(_nb_logpmf_direct(x, mu, theta)[ok], scipy_value[ok], rtol=1e-8, atol=ATOL)
    assert (~ok).sum() >= 6  # the fallback is exercised


def test_nb_log_prob_matches_scipy() -> None:
    x, mu, theta = _grid(X, MU, THETA)
    got = NegativeBinomial(_t(mu), _t(theta)).log_prob(_t(x)).numpy()
    np.testing.assert_allclose(got, nb_logpmf_ref(x, mu, theta), rtol=RTOL, atol=ATOL)


def test_zinb_log_prob_matches_hand_built_mixture() -> None:
    x, mu, theta, zl = _grid(X, MU, THETA, ZI)
    got = ZeroInflatedNegativeBinomial(_t(mu), _t(theta), _t(zl)).log_prob(_t(x)).numpy()
    np.testing.assert_allclose(got, zinb_logpmf_ref(x, mu, theta, zl), rtol=RTOL, atol=ATOL)


def test_poisson_log_prob_matches_scipy() -> None:
    x, mu = _grid(X, MU)
    got = PoissonCounts(_t(mu)).log_prob(_t(x)).numpy()
    np.testing.assert_allclose(got, stats.poisson.logpmf(x, mu), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", ["nb", "zinb", "poisson"])
def test_pmf_sums_to_one(name: str) -> None:
    mu = _t([0.0, 0.05, 2.0, 30.0])
    theta = _t([0.5, 0.2, 5.0, 1e4])
    dist = _all_dists(mu, theta, _t([1.0, -3.0, 0.0, 2.0]))[name]
    x = torch.arange(3000, dtype=F64)[:, None]
    total = dist.log_prob(x).exp().sum(0).numpy()
    np.testing.assert_allclose(total[1:], 1.0, rtol=0, atol=1e-10)
    # mu = 0 is floored at eps = 1e-8 inside log_prob: P(x = 1) ~ 1e-8 instead of 0
    np.testing.assert_allclose(total[0], 1.0, rtol=0, atol=3e-8)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", ["nb", "zinb", "poisson"])
def test_log_prob_rowsum_matches_log_prob(name: str, dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    mu = torch.rand(6, 40, generator=gen, dtype=F64) * 50
    mu[0, :5] = 0.0
    mu[1] = 1e5
    theta = torch.rand(40, generator=gen, dtype=F64) * 20 + 1e-3
    logits = torch.randn(6, 40, generator=gen, dtype=F64) * 3
    counts = torch.poisson(mu) * (torch.rand(6, 40, generator=gen, dtype=F64) < 0.3)
    counts[2, 3] = 1e6
    counts[5] = 0.0  # an all-zero row
    dist = _all_dists(mu.to(dtype), theta.to(dtype), logits.to(dtype))[name]
    dense = dist.log_prob(counts.to(dtype)).sum(-1)
    rowsum = dist.log_prob_rowsum(counts.to(dtype))
    assert rowsum.shape == (6,)
    rtol = 1e-10 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(rowsum.double().numpy(), dense.double().numpy(), rtol=rtol, atol=1e-3 * rtol)


def test_nb_rowsum_gradients_match_autograd_of_log_prob() -> None:
    """The NB row sum's hand-written backward (gene-wise theta) gives autograd's gradients of log_prob."""
    gen = torch.Generator().manual_seed(1)
    mu0 = torch.rand(5, 30, generator=gen, dtype=F64) * 40
    mu0[0, :4] = 0.0  # floored at eps: no gradient
    theta0 = torch.rand(30, generator=gen, dtype=F64) * 10 + 1e-2
    counts = torch.poisson(mu0) * (torch.rand(5, 30, generator=gen, dtype=F64) < 0.4)
    grads = []
    for rowsum in (True, False):
        mu, theta = mu0.clone().requires_grad_(True), theta0.clone().requires_grad_(True)
        dist = NegativeBinomial(mu, theta)
        out = dist.log_prob_rowsum(counts) if rowsum else dist.log_prob(counts).sum(-1)
        (out * torch.arange(1.0, 6.0, dtype=F64)).sum().backward()
        grads.append((mu.grad, theta.grad))
    for got, want in zip(*grads):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-9, atol=1e-12)
    assert torch.all(grads[0][0][0, :4] == 0)


# ----------------------------------------------------------------------------------------------------
# 2. Numerical stability
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_zero_counts_at_zero_mean_have_probability_one(dtype: torch.dtype) -> None:
    theta = _t([1e-30, 1e-12, 1e-4, 1.0, 1e5], dtype)
    mu = torch.zeros_like(theta)
    for name, dist in _all_dists(mu, theta, torch.zeros_like(theta)).items():
        lp = dist.log_prob(torch.zeros_like(theta))
        assert torch.isfinite(lp).all(), name
        np.testing.assert_allclose(lp.double().numpy(), 0.0, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_zero_mean_and_tiny_or_zero_theta_are_finite(dtype: torch.dtype) -> None:
    x, theta = _grid(X + [1e7], [0.0, 1e-30, 1e-12, 1e-8])
    mu = np.zeros_like(x)
    for name, dist in _all_dists(_t(mu, dtype), _t(theta, dtype), _t(mu, dtype), validate_args=False).items():
        lp = dist.log_prob(_t(x, dtype))
        assert torch.isfinite(lp).all(), name
        assert (lp <= 1e-6).all(), name
        # a positive count under a zero mean is (numerically) impossible
        assert (lp[x > 0] < -10).all(), name


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_huge_counts_are_finite(dtype: torch.dtype) -> None:
    x, mu, theta, zl = _grid([1e7], MU + [0.0, 1e7], THETA, ZI)
    for name, dist in _all_dists(_t(mu, dtype), _t(theta, dtype), _t(zl, dtype)).items():
        lp = dist.log_prob(_t(x, dtype))
        assert torch.isfinite(lp).all(), name
        assert (lp <= 0).all(), name


def test_huge_counts_match_reference_in_float64() -> None:
    x, mu, theta = _grid([1e7], [1e-6, 3.0, 1e6, 1e7, 1e8], THETA)
    got = NegativeBinomial(_t(mu), _t(theta)).log_prob(_t(x)).numpy()
    np.testing.assert_allclose(got, nb_logpmf_ref(x, mu, theta), rtol=RTOL)
    got = PoissonCounts(_t(mu)).log_prob(_t(x)).numpy()
    np.testing.assert_allclose(got, stats.poisson.logpmf(x, mu), rtol=1e-8)


def test_float32_is_finite_on_the_grid_and_close_to_float64_for_moderate_theta() -> None:
    x, mu, theta, zl = _grid(X, MU, THETA, ZI)
    d64 = _all_dists(_t(mu), _t(theta), _t(zl))
    d32 = _all_dists(_t(mu, torch.float32), _t(theta, torch.float32), _t(zl, torch.float32))
    moderate = theta <= 1e4
    for name in d64:
        lp64 = d64[name].log_prob(_t(x)).numpy()
        lp32 = d32[name].log_prob(_t(x, torch.float32))
        assert lp32.dtype == torch.float32
        assert torch.isfinite(lp32).all(), name
        check = moderate if name != "poisson" else np.ones_like(moderate)
        np.testing.assert_allclose(lp32.double().numpy()[check], lp64[check], rtol=1e-4, atol=1e-6, err_msg=name)


def _grads(name: str, x, mu, theta, zl, dtype) -> list[torch.Tensor]:
    mu_t, th_t, zl_t = (_t(a, dtype, requires_grad=True) for a in (mu, theta, zl))
    dist = _all_dists(mu_t, th_t, zl_t, validate_args=False)[name]
    inputs = {"nb": (mu_t, th_t), "zinb": (mu_t, th_t, zl_t), "poisson": (mu_t,)}[name]
    return list(torch.autograd.grad(dist.log_prob(_t(x, dtype)).sum(), inputs))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", ["nb", "zinb", "poisson"])
def test_gradients_are_finite_at_zero_counts_and_zero_mean(name: str, dtype: torch.dtype) -> None:
    # zero counts over all means (including mu = 0), and every count at mu = 0
    at_zero = _grid([0.0], [0.0] + MU, [1e-12] + THETA, ZI)
    at_zero_mean = _grid(X + [1e7], [0.0], [1e-12] + THETA, ZI)
    for x, mu, theta, zl in (at_zero, at_zero_mean):
        for g in _grads(name, x, mu, theta, zl, dtype):
            assert torch.isfinite(g).all(), (name, g)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gradients_are_finite_everywhere_on_the_grid(dtype: torch.dtype) -> None:
    x, mu, theta, zl = _grid(X + [1e7], MU, THETA, ZI)
    for name in ("nb", "zinb", "poisson"):
        for g in _grads(name, x, mu, theta, zl, dtype):
            assert torch.isfinite(g).all(), name


def test_nb_gradients_match_analytic_derivatives() -> None:
    x, mu, theta = _grid(X + [5.0, 9.0, 11.0, 1e7], MU, [1e-4, 0.1, 1.0, 9.5, 10.5, 100.0, 1e5])
    g_mu, g_theta = _grads("nb", x, mu, theta, np.zeros_like(x), F64)
    ref_mu = x / mu - (theta + x) / (theta + mu)
    ref_theta = digamma(x + theta) - digamma(theta) + np.log(theta / (theta + mu)) + 1 - (theta + x) / (theta + mu)
    scale_mu = x / mu + (theta + x) / (theta + mu)
    scale_theta = np.abs(digamma(x + theta)) + np.abs(digamma(theta)) + np.abs(np.log(theta / (theta + mu))) + 1 + (theta + x) / (theta + mu)
    np.testing.assert_allclose(g_mu.numpy() / scale_mu, ref_mu / scale_mu, rtol=0, atol=1e-12)
    np.testing.assert_allclose(g_theta.numpy() / scale_theta, ref_theta / scale_theta, rtol=0, atol=1e-9)


def test_poisson_and_zinb_gradients_match_analytic_derivatives() -> None:
    x, mu, zl = _grid([0.0, 1.0, 10.0, 1000.0, 1e6], MU, ZI)
    theta = np.full_like(x, 2.0)
    (g_mu,) = _grads("poisson", x, mu, theta, zl, F64)
    np.testing.assert_allclose(g_mu.numpy(), x / mu - 1, rtol=1e-10)
    # d/d logit of log ZINB: at x > 0 it is -pi; at x = 0 it is pi (1 - pi) (1 - NB(0)) / P(0)
    *_, g_zl = _grads("zinb", x, mu, theta, zl, F64)
    pi = 1 / (1 + np.exp(-zl))
    nb0 = (theta / (theta + mu)) ** theta
    p0 = pi + (1 - pi) * nb0
    ref = np.where(x == 0, pi * (1 - pi) * (1 - nb0) / p0, -pi)
    np.testing.assert_allclose(g_zl.numpy(), ref, rtol=1e-8, atol=1e-14)


def test_validate_args_rejects_bad_values_and_parameters() -> None:
    dist = NegativeBinomial(_t([2.0]), _t([1.0]), validate_args=True)
    for bad in (-1.0, 1.5):
        with pytest.raises(ValueError):
            dist.log_prob(_t([bad]))
    with pytest.raises(ValueError):
        NegativeBinomial(_t([2.0]), _t([0.0]), validate_args=True)
    with pytest.raises(ValueError):
        PoissonCounts(_t([-1.0]), validate_args=True)


# ----------------------------------------------------------------------------------------------------
# 3. Sampling
# ----------------------------------------------------------------------------------------------------

N_SAMPLES = 200_000
SAMPLE_MU = [0.3, 4.0, 60.0]
SAMPLE_THETA = [0.5, 3.0, 20.0]
SAMPLE_LOGITS = [-2.0, 0.0, 1.5]


@pytest.mark.parametrize("name", ["nb", "zinb", "poisson"])
def test_sample_moments_and_frequencies_match(name: str) -> None:
    torch.manual_seed(1234)
    dist = _all_dists(_t(SAMPLE_MU), _t(SAMPLE_THETA), _t(SAMPLE_LOGITS))[name]
    s = dist.sample((N_SAMPLES,))
    assert s.shape == (N_SAMPLES, 3)
    assert s.dtype == F64
    assert (s >= 0).all() and (s == s.round()).all()
    n = N_SAMPLES
    mean, var = dist.mean.numpy(), dist.variance.numpy()
    s_np = s.numpy()
    m_hat = s_np.mean(0)
    v_hat = s_np.var(0, ddof=1)
    m4_hat = ((s_np - m_hat) ** 4).mean(0)
    np.testing.assert_array_less(np.abs(m_hat - mean), 5 * np.sqrt(var / n))
    np.testing.assert_array_less(np.abs(v_hat - var), 5 * np.sqrt((m4_hat - v_hat**2) / n))
    # frequencies of the values each seen often enough, against exp(log_prob)
    for j in range(3):
        values, counts = np.unique(s_np[:, j], return_counts=True)
        keep = counts >= 500
        p = dist.log_prob(_t(values[keep])[:, None]).exp()[:, j].numpy()
        freq = counts[keep] / n
        np.testing.assert_array_less(np.abs(freq - p), 5 * np.sqrt(p * (1 - p) / n) + 1e-12)


def test_zinb_zero_fraction_matches_probability_of_zero() -> None:
    torch.manual_seed(7)
    dist = ZeroInflatedNegativeBinomial(_t(SAMPLE_MU), _t(SAMPLE_THETA), _t(SAMPLE_LOGITS))
    zero_frac = (dist.sample((N_SAMPLES,)) == 0).double().mean(0).numpy()
    p0 = dist.log_prob(torch.zeros(3, dtype=F64)).exp().numpy()
    np.testing.assert_array_less(np.abs(zero_frac - p0), 5 * np.sqrt(p0 * (1 - p0) / N_SAMPLES))
    # and the point mass is really there: the excess zeros over the NB alone are pi (1 - NB(0))
    nb0 = NegativeBinomial(_t(SAMPLE_MU), _t(SAMPLE_THETA)).log_prob(torch.zeros(3, dtype=F64)).exp().numpy()
    pi = dist.zi_probs.numpy()
    np.testing.assert_array_less(np.abs(zero_frac - nb0 - pi * (1 - nb0)), 5 * np.sqrt(p0 * (1 - p0) / N_SAMPLES))


def test_sampling_at_zero_mean_gives_zeros() -> None:
    torch.manual_seed(0)
    mu = torch.zeros(3, dtype=F64)
    for name, dist in _all_dists(mu, _t([1e-4, 1.0, 1e5]), _t([0.0, 0.0, 0.0])).items():
        s = dist.sample((1000,))
        assert torch.isfinite(s).all() and (s == 0).all(), name


# ----------------------------------------------------------------------------------------------------
# 4. Moments and broadcasting
# ----------------------------------------------------------------------------------------------------


def test_zinb_mean_and_variance_match_formulas_and_pmf_sums() -> None:
    mu = np.array([0.0, 0.2, 3.0, 25.0])
    theta = np.array([1.0, 0.5, 2.0, 40.0])
    zl = np.array([0.3, -1.0, 2.0, -4.0])
    dist = ZeroInflatedNegativeBinomial(_t(mu), _t(theta), _t(zl))
    pi = 1 / (1 + np.exp(-zl))
    mean = (1 - pi) * mu
    var = (1 - pi) * mu * (1 + mu / theta + pi * mu)  # = E[x^2] - E[x]^2 with E[x^2] = (1-pi)(mu + mu^2/theta + mu^2)
    np.testing.assert_allclose(dist.mean.numpy(), mean, rtol=1e-12)
    np.testing.assert_allclose(dist.variance.numpy(), var, rtol=1e-12)
    x = torch.arange(2000, dtype=F64)[:, None]
    p = dist.log_prob(x).exp()
    m1 = (p * x).sum(0).numpy()
    m2 = (p * x**2).sum(0).numpy()
    # atol: mu = 0 is floored at eps = 1e-8 inside log_prob, so the pmf there has mean ~1e-8
    np.testing.assert_allclose(m1, mean, rtol=1e-9, atol=3e-8)
    np.testing.assert_allclose(m2 - m1**2, var, rtol=1e-9, atol=3e-8)


@pytest.mark.parametrize("name", ["nb", "poisson"])
def test_nb_and_poisson_mean_and_variance_match_pmf_sums(name: str) -> None:
    mu, theta = _t([0.0, 0.2, 3.0, 25.0]), _t([1.0, 0.5, 2.0, 40.0])
    dist = _all_dists(mu, theta, torch.zeros(4, dtype=F64))[name]
    x = torch.arange(2000, dtype=F64)[:, None]
    p = dist.log_prob(x).exp()
    m1 = (p * x).sum(0)
    # atol: mu = 0 is floored at eps = 1e-8 inside log_prob, so the pmf there has mean ~1e-8
    np.testing.assert_allclose(dist.mean.numpy(), m1.numpy(), rtol=1e-9, atol=3e-8)
    np.testing.assert_allclose(dist.variance.numpy(), ((p * x**2).sum(0) - m1**2).numpy(), rtol=1e-9, atol=3e-8)


def test_broadcasting_of_parameters() -> None:
    gen = torch.Generator().manual_seed(0)
    mu = torch.rand(3, 4, generator=gen, dtype=F64) * 10
    theta = torch.rand(4, generator=gen, dtype=F64) + 0.5
    zl = torch.randn(3, 1, generator=gen, dtype=F64)
    value = torch.poisson(mu)
    expanded = _all_dists(mu, theta.expand(3, 4), zl.expand(3, 4))
    for name, dist in _all_dists(mu, theta, zl).items():
        assert dist.batch_shape == (3, 4), name
        assert dist.event_shape == (), name
        assert dist.mean.shape == dist.variance.shape == (3, 4), name
        _close(dist.log_prob(value), expanded[name].log_prob(value))
        _close(dist.mean, expanded[name].mean)
        _close(dist.variance, expanded[name].variance)
        assert dist.log_prob(value.expand(2, 3, 4)).shape == (2, 3, 4), name
        assert dist.sample((5,)).shape == (5, 3, 4), name
        assert dist.sample().shape == (3, 4), name


# ----------------------------------------------------------------------------------------------------
# 5. Registry
# ----------------------------------------------------------------------------------------------------


def test_registry_names() -> None:
    assert LIKELIHOODS.names() == ["nb", "poisson", "zinb"]
    for name in LIKELIHOODS.names():
        assert isinstance(LIKELIHOODS.get(name), CountLikelihood)
        assert LIKELIHOODS.get(name).name == name
        assert name in LIKELIHOODS
    assert LIKELIHOODS.get("ZINB") is LIKELIHOODS.get("zinb")


def test_registry_heads_and_built_types() -> None:
    mu, theta, zl = _t([1.0, 2.0]), _t([3.0, 4.0]), _t([0.0, 1.0])
    expected = {
        "nb": (True, False, NegativeBinomial),
        "zinb": (True, True, ZeroInflatedNegativeBinomial),
        "poisson": (False, False, PoissonCounts),
    }
    for name, (needs_theta, needs_zi, cls) in expected.items():
        lik = LIKELIHOODS.get(name)
        assert (lik.needs_dispersion, lik.needs_dropout) == (needs_theta, needs_zi)
        dist = lik.build(mu, theta, zl)
        assert type(dist) is cls
        assert dist._validate_args is False
        _close(dist.mean, _all_dists(mu, theta, zl)[name].mean)
    # the heads a likelihood does not use may be left out
    assert type(LIKELIHOODS.get("poisson").build(mu)) is PoissonCounts
    assert type(LIKELIHOODS.get("nb").build(mu, theta)) is NegativeBinomial
    _close(LIKELIHOODS.get("nb").build(mu, theta, zl).theta, theta)


@pytest.mark.parametrize(
    ("name", "kwargs", "missing"),
    [
        ("nb", {}, "theta"),
        ("nb", {"zi_logits": torch.zeros(2)}, "theta"),
        ("zinb", {"theta": torch.ones(2)}, "zi_logits"),
        ("zinb", {"zi_logits": torch.zeros(2)}, "theta"),
        ("zinb", {}, "zi_logits"),
    ],
)
def test_build_without_a_needed_head_raises(name: str, kwargs: dict, missing: str) -> None:
    with pytest.raises(ValueError, match=missing) as info:
        LIKELIHOODS.get(name).build(torch.ones(2), **kwargs)
    assert name in str(info.value)


def test_unknown_likelihood_raises_input_error_listing_choices() -> None:
    with pytest.raises(ExprflowInputError) as info:
        LIKELIHOODS.get("gamma_poisson")
    message = str(info.value)
    assert "gamma_poisson" in message
    assert "nb, poisson, zinb" in message
    assert isinstance(info.value, ValueError)
