"""A step-indexed, DDP-aware batch sampler: the rows of global step ``k`` are a pure function of
``(seed, k, rank, world_size)``.

::

    epoch e      = k // steps_per_epoch,   position p = k % steps_per_epoch
    order_e      = the e-th permutation of the rows drawn from torch.Generator(seed)
    global batch = order_e[p * B * W : (p + 1) * B * W]        (B rows per process, W processes)
    rank r       = global batch[r * B : (r + 1) * B]

So a run killed after step ``k`` continues with exactly the batches an uninterrupted run would have
seen (the sampler starts at the trainer's ``global_step``), and the processes of a DDP run see
disjoint rows of every global batch. With one process the order is bit-for-bit the order of
``DataLoader(shuffle=True, generator=torch.Generator().manual_seed(seed), drop_last=True)`` run by
Lightning (which stops each epoch at the loader's length): per epoch that loader draws a 64-bit base
seed and then the epoch's ``randperm`` from its generator, and :meth:`StepBatchSampler.epoch_order`
replays the same draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from exprflow.errors import ExprflowInputError

#: ``() -> (global_step, rank, world_size)``
Progress = Callable[[], tuple[int, int, int]]


class StepBatchSampler(Sampler[list[int]]):
    """Batches of row indices indexed by the global step (see the module docstring).

    Parameters
    ----------
    n
        number of rows.
    batch_size
        rows per process and step (Lightning's convention: per device).
    seed
        seed of the epoch permutations.
    drop_last
        drop the last incomplete global batch of an epoch (otherwise it is padded with rows
        from the start of the epoch's order, as ``DistributedSampler`` pads, so every process gets
        ``batch_size`` rows; with one process it is simply shorter).

    Notes
    -----
    Call :meth:`bind` with a Lightning ``Trainer`` (``fit_loader`` does) to start each epoch's
    iteration at ``trainer.global_step`` and take rank and world size from the trainer; unbound, the
    sampler is a single process starting at step :attr:`start_step`.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, drop_last: bool = True) -> None:
        if int(n) < 1:
            raise ExprflowInputError(f"Cannot batch {n} rows: the data has no cells.")
        if int(batch_size) < 1:
            raise ExprflowInputError(f"batch_size must be a positive integer, got {batch_size}.")
        self.n, self.batch_size, self.seed, self.drop_last = int(n), int(batch_size), int(seed), bool(drop_last)
        self.start_step = 0
        self._progress: Progress | None = None
        self._cache: tuple[int, torch.Tensor, torch.Tensor] | None = None  # (epoch, order, generator state after it)

    # ------------------------------------------------------------------ binding
    def bind(self, trainer) -> "StepBatchSampler":
        """Follow ``trainer``'s global step, rank and world size."""
        self._progress = lambda: (int(trainer.global_step), int(trainer.global_rank), int(trainer.world_size))
        return self

    def _state(self) -> tuple[int, int, int]:
        return self._progress() if self._progress is not None else (self.start_step, 0, 1)

    # ------------------------------------------------------------------ indexing
    def steps_per_epoch(self, world_size: int = 1) -> int:
        """Steps of one epoch (one pass over the rows) with ``world_size`` processes."""
        global_batch = self.batch_size * world_size
        if global_batch > self.n:
            raise ExprflowInputError(
                f"{world_size} process(es) x batch_size {self.batch_size} = {global_batch} rows per step, but the "
                f"data has only {self.n} cells. Lower batch_size or the number of devices."
            )
        return self.n // global_batch if self.drop_last else math.ceil(self.n / global_batch)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The row order of ``epoch`` (the ``epoch``-th permutation drawn from ``Generator(seed)``)."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1].numpy()
        gen = torch.Generator().manual_seed(self.seed)
        first = 0
        if self._cache is not None and self._cache[0] < epoch:
            gen.set_state(self._cache[2])
            first = self._cache[0] + 1
        for _ in range(first, epoch + 1):
            torch.empty((), dtype=torch.int64).random_(generator=gen)  # the DataLoader iterator's base seed
            order = torch.randperm(self.n, generator=gen)
        self._cache = (epoch, order, gen.get_state())
        return order.numpy()

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
        """Row indices that process ``rank`` of ``world_size`` trains on at global step ``step``."""
        per_epoch = self.steps_per_epoch(world_size)
        epoch, position = divmod(int(step), per_epoch)
        order = self.epoch_order(epoch)
        global_batch = self.batch_size * world_size
        rows = order[position * global_batch : (position + 1) * global_batch]
        if len(rows) < global_batch and world_size > 1:  # pad the last global batch from the epoch's start
            rows = np.concatenate([rows, np.resize(order, global_batch - len(rows))])
        return rows[rank * self.batch_size : (rank + 1) * self.batch_size]

    # ------------------------------------------------------------------ Sampler protocol
    def __len__(self) -> int:
        return self.steps_per_epoch(self._state()[2])

    def __iter__(self) -> Iterator[list[int]]:
        start, rank, world_size = self._state()
        per_epoch = self.steps_per_epoch(world_size)
        epoch, position = divmod(start, per_epoch)
        for p in range(position, per_epoch):
            yield self.batch(epoch * per_epoch + p, rank, world_size).tolist()


def step_loader(dataset: Dataset, batch_size: int, seed: int = 0, drop_last: bool = True, collate_fn=None,
                num_workers: int = 0) -> DataLoader:
    """A ``DataLoader`` over ``dataset`` whose batches come from a :class:`StepBatchSampler`.

    The loader gets its own generator, so creating its iterators never draws from torch's global RNG
    (the flow objective draws ``x0`` and ``t`` from it).
    """
    sampler = StepBatchSampler(len(dataset), batch_size, seed=seed, drop_last=drop_last)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_fn, num_workers=num_workers,
                      generator=torch.Generator().manual_seed(int(seed)))
