"""ODE solvers against closed-form answers.

Gaussian rectified flow: x0 ~ N(0, I), x1 ~ N(m, s^2 I) independent, xt = (1 - t) x0 + t x1. The pair
(u, xt) = (x1 - x0, xt) is jointly Gaussian per coordinate with

    E[xt] = t m,   Var[xt] = (1 - t)^2 + t^2 s^2 =: D(t),   Cov[u, xt] = t s^2 - (1 - t),   E[u] = m,

so the marginal velocity is v*(x, t) = E[u | xt = x] = m + (t s^2 - (1 - t)) (x - t m) / D(t)
                                                     = ((t s^2 - (1 - t)) x + (1 - t) m) / D(t).
Its flow is x(t) = t m + sqrt(D(t)) x0 (check: dx/dt = m + D'(t) / (2 D(t)) (x - t m) and
D'/2 = t s^2 - (1 - t)), so x(1) = m + s x0 exactly.
"""

from __future__ import annotations

import math

import pytest
import torch

from exprflow.errors import ExprflowInputError
from exprflow.sampling import SOLVERS, SampleResult, integrate

M = torch.tensor([2.0, -1.0, 0.5])
S = 0.4


def gaussian_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    t = t[:, None]
    m = M.to(x.dtype)
    return ((t * S**2 - (1 - t)) * x + (1 - t) * m) / ((1 - t) ** 2 + t**2 * S**2)


def decay_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """dx/dt = -2 t x, solution x(t) = x(0) exp(-t^2)."""
    return -2.0 * t[:, None] * x


def _x0(n=4000, dtype=torch.float32):
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(0), dtype=dtype)


# Max pointwise error and error of the moments at 16 steps (dopri5: default atol = rtol = 1e-5).
TOLERANCE = {"euler": (0.25, 0.06), "heun": (1e-2, 2e-3), "rk4": (1e-5, 1e-6), "dopri5": (1e-3, 2e-4)}


@pytest.mark.parametrize("solver", ["euler", "heun", "rk4", "dopri5"])
def test_solvers_map_noise_to_gaussian_data(solver):
    x0 = _x0()
    result = integrate(gaussian_velocity, x0, solver=solver, n_steps=16)
    pointwise, moments = TOLERANCE[solver]
    assert (result.x - (M + S * x0)).abs().max().item() < pointwise
    # Sample moments reach mean m and std s (relative to the sample moments of x0).
    assert torch.allclose(result.x.mean(0), M + S * x0.mean(0), atol=moments)
    assert torch.allclose(result.x.std(0), S * x0.std(0), atol=moments)
    assert torch.allclose(result.x.mean(0), M, atol=0.05)
    assert torch.allclose(result.x.std(0), torch.full((3,), S), atol=0.06)


@pytest.mark.parametrize("solver", ["heun", "rk4", "dopri5"])
def test_reverse_integration_maps_data_back_to_noise(solver):
    x0 = _x0(500)
    back = integrate(gaussian_velocity, M + S * x0, solver=solver, n_steps=32, t0=1.0, t1=0.0).x
    assert (back - x0).abs().max().item() < 10 * TOLERANCE[solver][0]


def test_error_decreases_with_order_and_converges_at_the_right_rate():
    x0 = _x0(100, torch.float64)
    exact = x0 * math.exp(-1.0)

    def error(solver, n):
        return (integrate(decay_velocity, x0, solver=solver, n_steps=n).x - exact).abs().max().item()

    errors = {s: error(s, 8) for s in ("euler", "heun", "rk4")}
    assert errors["euler"] > errors["heun"] > errors["rk4"] > 0
    for solver, order in (("euler", 1), ("heun", 2), ("rk4", 4)):
        ratio = error(solver, 8) / error(solver, 16)
        assert 0.8 * 2**order < ratio < 1.25 * 2**order, (solver, ratio)


def test_dopri5_accuracy_and_nfe():
    x0 = _x0(100)
    result = integrate(decay_velocity, x0, solver="dopri5", atol=1e-6, rtol=1e-6)
    assert (result.x - x0 * math.exp(-1.0)).abs().max().item() < 1e-4
    assert result.nfe > 0
    x0 = _x0(500, torch.float64)
    tight = integrate(gaussian_velocity, x0, solver="dopri5", atol=1e-7, rtol=1e-7)
    assert (tight.x - (M + S * x0)).abs().max().item() < 1e-5
    loose = integrate(gaussian_velocity, x0, solver="dopri5", atol=1e-4, rtol=1e-4)
    assert tight.nfe > loose.nfe > 0


@pytest.mark.parametrize("solver,per_step", [("euler", 1), ("heun", 2), ("rk4", 4), ("dopri5", None)])
def test_nfe_counts_calls_and_no_grad(solver, per_step):
    calls = []

    def velocity(x, t):
        assert not torch.is_grad_enabled()
        assert t.shape == (x.shape[0],) and t.dtype == x.dtype
        calls.append(float(t[0]))
        return gaussian_velocity(x, t)

    result = integrate(velocity, _x0(10), solver=solver, n_steps=5)
    assert result.nfe == len(calls)
    if per_step is not None:
        assert result.nfe == per_step * 5
        assert min(calls) == 0.0 and max(calls) <= 1.0


@pytest.mark.parametrize("solver", ["euler", "rk4", "dopri5"])
def test_trajectory(solver):
    x0 = _x0(7)
    result = integrate(gaussian_velocity, x0, solver=solver, n_steps=10, return_trajectory=True)
    assert isinstance(result, SampleResult)
    assert result.trajectory.shape == (11, 7, 3) and result.times.shape == (11,)
    torch.testing.assert_close(result.trajectory[0], x0)
    torch.testing.assert_close(result.trajectory[-1], result.x)
    torch.testing.assert_close(result.times, torch.linspace(0, 1, 11))
    no_traj = integrate(gaussian_velocity, x0, solver=solver, n_steps=10)
    assert no_traj.trajectory is None and no_traj.times is None


def test_sample_result_is_frozen():
    result = integrate(gaussian_velocity, _x0(2), n_steps=2)
    with pytest.raises(AttributeError):
        result.nfe = 0


def test_bad_arguments():
    assert set(SOLVERS.names()) >= {"euler", "heun", "rk4", "dopri5"}
    with pytest.raises(ExprflowInputError):
        integrate(gaussian_velocity, _x0(2), solver="leapfrog")
    with pytest.raises(ExprflowInputError):
        integrate(gaussian_velocity, _x0(2), n_steps=0)
