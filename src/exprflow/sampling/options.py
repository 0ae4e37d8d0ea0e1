"""What a caller chooses when sampling a flow: solver, number of steps, guidance, seed and batch size.

:class:`SamplingOptions` defines the defaults once; ``FlowModel.generate``, ``exprflow generate``,
``exprflow predict`` and ``exprflow trajectory`` read them from here. Kept free of torch so the CLI can
show them in ``--help`` without importing it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamplingOptions:
    """Options of one sampling call.

    Parameters
    ----------
    solver
        A name in :data:`exprflow.sampling.SOLVERS` (``euler``, ``heun``, ``rk4``, ``dopri5``).
    n_steps
        Solver steps (for ``dopri5``, intervals of the saved trajectory).
    guidance
        Classifier-free guidance scale (Ho & Salimans 2022); 1.0 is plain conditional sampling.
    seed
        Seed of the noise and of the count sampling.
    batch_size
        Cells integrated together; ``None`` lets the model choose.

    Notes
    -----
    The defaults, Heun with 4 steps (8 network evaluations), kept PBMC3k's evaluation-protocol metrics
    at those of :data:`EULER_REFERENCE` (BENCHMARKS.md, generation speed); fewer evaluations without
    reflow did not. A reflowed model (Liu et al. 2022) samples with one Euler step instead.
    """

    solver: str = "heun"
    n_steps: int = 4
    guidance: float = 1.0
    seed: int = 0
    batch_size: int | None = None


#: Euler with 16 steps: the fine fixed-step grid the default was validated against. The benchmark grid
#: (``ExperimentSpec``) samples every model on it so that models are compared at equal network
#: evaluations, and transport from given cells (``PerturbationFlow.predict``, ``TrajectoryFlow``) keeps
#: it as its default.
EULER_REFERENCE = SamplingOptions(solver="euler", n_steps=16)
