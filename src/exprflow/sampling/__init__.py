"""ODE samplers for flow models: integrate ``dx/dt = v(x, t)`` from ``t0 = 0`` (noise) to ``t1 = 1`` (data).

Solvers are chosen by name from :data:`SOLVERS`: fixed-step ``"euler"``, ``"heun"``, ``"rk4"`` and adaptive
``"dopri5"`` (torchdiffeq). :func:`integrate` returns a :class:`SampleResult` with the end state, the
number of velocity evaluations and, optionally, the trajectory.
"""

from __future__ import annotations

from exprflow.sampling.adaptive import Dopri5Solver
from exprflow.sampling.integrate import SampleResult, integrate
from exprflow.sampling.solvers import SOLVERS, EulerSolver, FixedStepSolver, HeunSolver, RK4Solver

__all__ = [
    "SOLVERS",
    "Dopri5Solver",
    "EulerSolver",
    "FixedStepSolver",
    "HeunSolver",
    "RK4Solver",
    "SampleResult",
    "integrate",
]
