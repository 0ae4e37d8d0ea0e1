"""The result of integrating a flow ODE."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class SampleResult:
    """End state and bookkeeping of one ODE integration.

    Attributes:
        x: the state at ``t1``, shape ``(B, ...)``.
        nfe: number of velocity evaluations (calls of ``velocity(x, t)``).
        trajectory: saved states ``(n_saved, B, ...)`` including ``x0`` and ``x``, or None.
        times: the times of the saved states ``(n_saved,)``, or None without a trajectory.
    """

    x: Tensor
    nfe: int
    trajectory: Tensor | None = None
    times: Tensor | None = None
