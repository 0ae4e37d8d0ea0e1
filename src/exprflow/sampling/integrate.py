"""One entry point for sampling: ``integrate(velocity, x0, solver=...)``."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor

from exprflow.errors import ExprflowInputError
from exprflow.sampling.options import EULER_REFERENCE
from exprflow.sampling.result import SampleResult
from exprflow.sampling.solvers import SOLVERS

logger = logging.getLogger(__name__)


def integrate(
    velocity: Callable[[Tensor, Tensor], Tensor],
    x0: Tensor,
    *,
    solver: str = EULER_REFERENCE.solver,
    n_steps: int = EULER_REFERENCE.n_steps,
    t0: float = 0.0,
    t1: float = 1.0,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    return_trajectory: bool = False,
) -> SampleResult:
    """Integrate ``dx/dt = velocity(x, t)`` from ``t0`` to ``t1`` starting at ``x0``, without gradients.

    Parameters
    ----------
    velocity
        ``velocity(x, t)`` with ``x (B, ...)`` and ``t (B,)``; e.g. a backbone wrapped by
        :func:`exprflow.flows.guided_velocity`.
    x0
        Initial state, noise ``N(0, I)`` for sampling a flow model (t0 = 0 -> t1 = 1 gives data).
    solver
        A name in :data:`SOLVERS` (``euler``, ``heun``, ``rk4``, ``dopri5``).
    n_steps
        Number of fixed steps; for ``dopri5`` the number of intervals of the saved trajectory.
    t0, t1
        Start and end times.
    atol, rtol
        Tolerances of the adaptive solver (unused by fixed-step solvers).
    return_trajectory
        Also return the states at the step times (``(n_steps + 1, B, ...)``).

    Returns
    -------
    SampleResult
        The end state, the number of velocity evaluations and, if asked, the trajectory.
    """
    if int(n_steps) < 1:
        raise ExprflowInputError(f"n_steps must be a positive integer, got {n_steps}.")
    method = SOLVERS.build(solver)
    with torch.no_grad():
        result = method.solve(
            velocity, x0, t0=float(t0), t1=float(t1), n_steps=int(n_steps), atol=atol, rtol=rtol,
            return_trajectory=return_trajectory,
        )
    logger.debug("integrated with %s: nfe=%d", solver, result.nfe)
    return result
