"""How many CPU threads exprflow's own PyTorch work uses, and a default that never oversubscribes.

PyTorch starts one OpenMP thread per core, and OpenMP threads that wait spin on their core. On a
shared machine that multiplies the cost of small operations: a flow step on an 11-dimensional latent
takes microseconds of arithmetic and milliseconds of threads waiting for each other. So exprflow picks
the threads per kind of work, and gives the previous setting back afterwards::

    small work (a flow on a state of <= SMALL_WIDTH features)   1 thread
    wide work  (the count VAE on genes, a flow in gene space,    min(available cores, PyTorch's own default)
                sampling thousands of cells together)

PyTorch's default already follows ``OMP_NUM_THREADS``, so an environment that sets it is respected.
``settings.num_threads = N`` (or ``exprflow --threads N``) overrides both kinds, like
``scvi.settings.num_threads``::

    import exprflow
    exprflow.settings.num_threads = 2   # every training and sampling step of exprflow on 2 threads
    exprflow.settings.num_threads = None  # back to the automatic choice

NumPy / SciPy BLAS threads (used by the evaluation) are not changed; see docs/performance.md.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

from exprflow.errors import ExprflowInputError

#: widest state (features per cell) still treated as small work, run on one thread
SMALL_WIDTH = 64


class Settings:
    """exprflow's global settings (one instance: :data:`exprflow.settings`)."""

    def __init__(self) -> None:
        self._num_threads: int | None = None

    @property
    def num_threads(self) -> int | None:
        """Threads for every PyTorch step of exprflow, or ``None`` (the default) for the automatic choice."""
        return self._num_threads

    @num_threads.setter
    def num_threads(self, value: int | None) -> None:
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ExprflowInputError(f"num_threads must be a positive integer or None, got {value!r}.")
        self._num_threads = value


settings = Settings()

_depth = 0  # nesting of thread_limit blocks (the outermost one sees the process's own setting)
_outer_threads: int | None = None


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a SLURM or ``taskset`` allocation)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # macOS, Windows
        return max(os.cpu_count() or 1, 1)


def threads_for(width: int | None) -> int:
    """Threads for work on ``width`` features per cell (``None``: wide work); see the module docstring."""
    import torch

    if settings.num_threads is not None:
        return settings.num_threads
    if width is not None and width <= SMALL_WIDTH:
        return 1
    default = _outer_threads if _outer_threads is not None else torch.get_num_threads()
    return max(1, min(available_cores(), default))


@contextmanager
def thread_limit(width: int | None):
    """Run the block with ``threads_for(width)`` PyTorch threads, then restore the previous count."""
    import torch

    global _depth, _outer_threads
    previous = torch.get_num_threads()
    if _depth == 0:
        _outer_threads = previous
    n = threads_for(width)
    _depth += 1
    try:
        if n != previous:
            torch.set_num_threads(n)
        yield n
    finally:
        _depth -= 1
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
        if _depth == 0:
            _outer_threads = None
