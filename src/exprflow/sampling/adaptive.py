"""Adaptive Dormand-Prince 5(4) integration through ``torchdiffeq.odeint``.

The velocity is wrapped in a counter so the result reports the true number of evaluations. With
``return_trajectory`` the states are saved at ``n_steps + 1`` equally spaced times (torchdiffeq
interpolates them; they do not constrain the adaptive steps).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torchdiffeq import odeint

from exprflow.sampling.options import EULER_REFERENCE
from exprflow.sampling.result import SampleResult
from exprflow.sampling.solvers import SOLVERS

Velocity = Callable[[Tensor, Tensor], Tensor]


class _CountingVelocity:
    """``f(t, x)`` for torchdiffeq that calls ``velocity(x, t (B,))`` and counts the calls."""

    def __init__(self, velocity: Velocity) -> None:
        self.velocity = velocity
        self.nfe = 0

    def __call__(self, t: Tensor, x: Tensor) -> Tensor:
        self.nfe += 1
        tb = t.to(dtype=x.dtype, device=x.device).reshape(1).expand(x.shape[0])
        return self.velocity(x, tb)


@SOLVERS.register("dopri5")
class Dopri5Solver:
    """Adaptive Dormand-Prince 5(4) with error control ``atol + rtol * |x|``."""

    order = 5

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
        """Integrate adaptively from ``t0`` to ``t1``; ``n_steps`` only sets the saved grid."""
        n_saved = n_steps + 1 if return_trajectory else 2
        times = torch.linspace(t0, t1, n_saved, dtype=x0.dtype, device=x0.device)
        func = _CountingVelocity(velocity)
        states = odeint(func, x0, times, method="dopri5", atol=atol, rtol=rtol)  # (n_saved, B, ...)
        return SampleResult(
            x=states[-1],
            nfe=func.nfe,
            trajectory=states if return_trajectory else None,
            times=times if return_trajectory else None,
        )
