"""Fixed-step explicit Runge-Kutta solvers for ``dx/dt = v(x, t)``, registered in :data:`SOLVERS`.

Every solver has ``solve(velocity, x0, *, t0, t1, n_steps, atol, rtol, return_trajectory) -> SampleResult``;
``velocity(x, t)`` receives ``t`` as a ``(B,)`` tensor with ``x``'s dtype and device. With step
``h = (t1 - t0) / n_steps`` (order p, function evaluations per step)::

    euler (p=1, 1):  x + h v(x, t)
    heun  (p=2, 2):  k1 = v(x, t); k2 = v(x + h k1, t + h); x + h (k1 + k2) / 2
    rk4   (p=4, 4):  classical Runge-Kutta

NFE = ``n_steps`` (euler), ``2 * n_steps`` (heun, the last step is not skipped), ``4 * n_steps`` (rk4).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from exprflow.registry import Registry
from exprflow.sampling.options import EULER_REFERENCE
from exprflow.sampling.result import SampleResult

SOLVERS: Registry = Registry("solver")

Velocity = Callable[[Tensor, Tensor], Tensor]


class FixedStepSolver:
    """Base class: subclasses define ``evals_per_step``, ``order`` and ``step(velocity, x, t, h)``."""

    order: int = 0
    evals_per_step: int = 0

    def step(self, velocity: Velocity, x: Tensor, t: float, h: float) -> Tensor:
        """Advance ``x`` from ``t`` to ``t + h``."""
        raise NotImplementedError

    @staticmethod
    def _eval(velocity: Velocity, x: Tensor, t: float) -> Tensor:
        return velocity(x, torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device))

    def solve(
        self,
        velocity: Velocity,
        x0: Tensor,
        *,
        t0: float = 0.0,
        t1: float = 1.0,
        n_steps: int = EULER_REFERENCE.n_steps,
        atol: float = 1e-5,
        rtol: float = 1e-5,
        return_trajectory: bool = False,
    ) -> SampleResult:
        """Integrate from ``t0`` to ``t1`` in ``n_steps`` equal steps (``atol``/``rtol`` are unused)."""
        times = torch.linspace(t0, t1, n_steps + 1, dtype=torch.float64)
        x = x0
        saved = [x0] if return_trajectory else None
        for i in range(n_steps):
            t, t_next = float(times[i]), float(times[i + 1])
            x = self.step(velocity, x, t, t_next - t)
            if saved is not None:
                saved.append(x)
        trajectory = torch.stack(saved) if saved is not None else None
        return SampleResult(
            x=x,
            nfe=self.evals_per_step * n_steps,
            trajectory=trajectory,
            times=times.to(x0.dtype) if return_trajectory else None,
        )


@SOLVERS.register("euler")
class EulerSolver(FixedStepSolver):
    """Explicit Euler, order 1, one evaluation per step."""

    order = 1
    evals_per_step = 1

    def step(self, velocity: Velocity, x: Tensor, t: float, h: float) -> Tensor:
        return x + h * self._eval(velocity, x, t)


@SOLVERS.register("heun")
class HeunSolver(FixedStepSolver):
    """Heun's method (explicit trapezoid), order 2, two evaluations per step."""

    order = 2
    evals_per_step = 2

    def step(self, velocity: Velocity, x: Tensor, t: float, h: float) -> Tensor:
        k1 = self._eval(velocity, x, t)
        k2 = self._eval(velocity, x + h * k1, t + h)
        return x + 0.5 * h * (k1 + k2)


@SOLVERS.register("rk4")
class RK4Solver(FixedStepSolver):
    """Classical fourth-order Runge-Kutta, four evaluations per step."""

    order = 4
    evals_per_step = 4

    def step(self, velocity: Velocity, x: Tensor, t: float, h: float) -> Tensor:
        k1 = self._eval(velocity, x, t)
        k2 = self._eval(velocity, x + 0.5 * h * k1, t + 0.5 * h)
        k3 = self._eval(velocity, x + 0.5 * h * k2, t + 0.5 * h)
        k4 = self._eval(velocity, x + h * k3, t + h)
        return x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
