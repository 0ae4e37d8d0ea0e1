"""ODE samplers for flow models: integrate ``dx/dt = v(x, t)`` from ``t0 = 0`` (noise) to ``t1 = 1`` (data).

Solvers are chosen by name from :data:`SOLVERS`: fixed-step ``"euler"``, ``"heun"``, ``"rk4"`` and adaptive
``"dopri5"`` (torchdiffeq). :func:`integrate` returns a :class:`SampleResult` with the end state, the
number of velocity evaluations and, optionally, the trajectory. :class:`SamplingOptions` holds what a
caller chooses (solver, steps, guidance, seed, batch size) and defines the defaults once.

Names are imported lazily, so the CLI reads :class:`SamplingOptions` without importing torch.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "SOLVERS": "solvers",
    "EulerSolver": "solvers",
    "FixedStepSolver": "solvers",
    "HeunSolver": "solvers",
    "RK4Solver": "solvers",
    "Dopri5Solver": "adaptive",
    "SampleResult": "result",
    "integrate": "integrate",
    "SamplingOptions": "options",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'exprflow.sampling' has no attribute {name!r}")
    if module != "options":
        # every solver module at once (dopri5 registered beside the fixed-step ones); the names are bound
        # here so that ``integrate`` is the function, not the submodule of the same name
        for sub in ("solvers", "adaptive", "result", "integrate"):
            importlib.import_module(f"exprflow.sampling.{sub}")
        globals().update({n: getattr(importlib.import_module(f"exprflow.sampling.{m}"), n)
                          for n, m in _LAZY.items() if m != "options"})
        return globals()[name]
    return getattr(importlib.import_module("exprflow.sampling.options"), name)
