"""Block-shuffled mini-batches from rows on disk (the scDataset / annbatch idea, written for exprflow).

Random access to single cells of an HDF5 file costs one read per cell. Instead, every epoch::

    blocks   = runs of ``block_rows`` consecutive cells             (one contiguous read each)
    order    = permutation of the blocks, from (seed, epoch)
    buffer   = ``buffer_blocks`` blocks of that order (+ the rows left over from the previous buffer)
    batches  = the buffer's rows in a random permutation, ``batch_size`` at a time, densified per batch

Every kept cell is visited exactly once per epoch (``drop_last=False``; with ``drop_last=True`` at most
``batch_size - 1`` cells of the epoch's tail are skipped). The trade-off: a batch draws from a window
of ``block_rows * buffer_blocks`` cells, not from the whole atlas, and cells of the same block tend to
land in the same few batches. Larger buffers are closer to a full shuffle and cost memory
(about ``buffer rows x stored entries per cell x 8`` bytes); larger blocks read faster and mix less.
A file whose cells are sorted by a label (condition, donor) is the worst case; on kang x10 the
defaults (1,024 x 16 = 16,384 cells, ~12% of the file) are measured in BENCHMARKS.md.

Sharding: blocks are split across DDP ranks (``torch.distributed``) and DataLoader workers, the
epoch's block order being the same everywhere; with more than one rank every rank yields the same
number of batches (``cells // world_size // batch_size``), as DDP needs.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from exprflow.data.cell_dataset import CellDataset
from exprflow.data.samplers import StepBatchSampler
from exprflow.errors import ExprflowInputError

DEFAULT_BLOCK_ROWS = 1024
DEFAULT_BUFFER_BLOCKS = 16


def _world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class BlockShuffleDataset(IterableDataset):
    """Iterable of ready batches ``{"x": float32 (B, G), "cond": int64 (B,) or None, "index": int64 (B,)}``.

    ``rows`` is anything with ``shape`` and ``read_range(start, stop) -> CSR`` (a
    :class:`~exprflow.data.backed.BackedRows`, or :class:`InMemoryRows` around a CSR matrix).
    ``index`` holds row positions in ``rows``. Use :meth:`set_epoch` to choose an epoch's order;
    otherwise each new iteration takes the next epoch.
    """

    def __init__(self, rows, conditions: np.ndarray | None, batch_size: int, *, block_rows: int = DEFAULT_BLOCK_ROWS,
                 buffer_blocks: int = DEFAULT_BUFFER_BLOCKS, shuffle: bool = True, drop_last: bool = True,
                 seed: int = 0, rank: int | None = None, world_size: int | None = None) -> None:
        for name, value in (("batch_size", batch_size), ("block_rows", block_rows), ("buffer_blocks", buffer_blocks)):
            if int(value) < 1:
                raise ExprflowInputError(f"{name} must be a positive integer, got {value}.")
        n = int(rows.shape[0])
        if conditions is not None and len(conditions) != n:
            raise ExprflowInputError(f"conditions must have one code per cell ({n}), got {len(conditions)}.")
        self.rows, self.conditions = rows, conditions
        self.batch_size, self.block_rows, self.buffer_blocks = int(batch_size), int(block_rows), int(buffer_blocks)
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, int(seed)
        self._rank, self._world_size = rank, world_size
        self._next_epoch = 0

    @property
    def n_blocks(self) -> int:
        return math.ceil(self.rows.shape[0] / self.block_rows)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use ``epoch``'s block order and shuffles."""
        self._next_epoch = int(epoch)

    def _shard(self) -> tuple[int, int]:
        rank, world = _world()
        return (rank if self._rank is None else self._rank), (world if self._world_size is None else self._world_size)

    def __len__(self) -> int:
        _, world = self._shard()
        n = self.rows.shape[0] // world if world > 1 else self.rows.shape[0]
        return n // self.batch_size if self.drop_last or world > 1 else math.ceil(n / self.batch_size)

    def block_order(self, epoch: int) -> np.ndarray:
        """Block ids this process reads in ``epoch`` (after rank and worker sharding)."""
        order = np.arange(self.n_blocks)
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(order)
        rank, world = self._shard()
        order = order[rank::world]
        info = get_worker_info()
        return order if info is None else order[info.id :: info.num_workers]

    def _read_blocks(self, blocks: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
        parts, index = [], []
        for b in blocks:
            start = int(b) * self.block_rows
            stop = min(start + self.block_rows, self.rows.shape[0])
            parts.append(self.rows.read_range(start, stop))
            index.append(np.arange(start, stop, dtype=np.int64))
        return sp.vstack(parts, format="csr"), np.concatenate(index)

    def _batch(self, X: sp.csr_matrix, index: np.ndarray) -> dict:
        x = torch.from_numpy(np.ascontiguousarray(X.toarray(), dtype=np.float32))
        cond = None if self.conditions is None else torch.from_numpy(np.asarray(self.conditions[index], dtype=np.int64))
        return {"x": x, "cond": cond, "index": torch.from_numpy(index)}

    def __iter__(self):
        epoch = self._next_epoch
        self._next_epoch += 1
        rng = np.random.default_rng([self.seed, epoch, 1])
        order = self.block_order(epoch)
        limit = len(self) if self._shard()[1] > 1 else None
        held_X, held_idx, yielded = None, np.empty(0, dtype=np.int64), 0
        for lo in range(0, len(order), self.buffer_blocks):
            X, index = self._read_blocks(order[lo : lo + self.buffer_blocks])
            if held_X is not None:  # rows left over from the previous buffer join this one
                X, index = sp.vstack([held_X, X], format="csr"), np.concatenate([held_idx, index])
            perm = rng.permutation(len(index)) if self.shuffle else np.arange(len(index))
            n_full = len(perm) // self.batch_size * self.batch_size
            for start in range(0, n_full, self.batch_size):
                if limit is not None and yielded >= limit:
                    return
                take = perm[start : start + self.batch_size]
                yield self._batch(X[take], index[take])
                yielded += 1
            rest = perm[n_full:]
            held_X, held_idx = X[rest], index[rest]
        if len(held_idx) and not self.drop_last and (limit is None or yielded < limit):
            yield self._batch(held_X, held_idx)


class InMemoryRows:
    """``read_range`` over an in-memory matrix, so :class:`BlockShuffleDataset` can be compared with it."""

    def __init__(self, X: sp.spmatrix | np.ndarray) -> None:
        self.X = sp.csr_matrix(X, dtype=np.float32)
        self.shape = self.X.shape

    def read_range(self, start: int, stop: int) -> sp.csr_matrix:
        return self.X[start:stop]


def block_loader(rows, conditions: np.ndarray | None = None, *, batch_size: int = 256, shuffle: bool = True,
                 seed: int | None = None, drop_last: bool = False, num_workers: int = 0,
                 block_rows: int = DEFAULT_BLOCK_ROWS, buffer_blocks: int = DEFAULT_BUFFER_BLOCKS) -> DataLoader:
    """A ``DataLoader`` over a :class:`BlockShuffleDataset` (the arguments of :func:`~exprflow.data.make_dataloader`).

    With ``num_workers > 0`` the workers are persistent, so each keeps its epoch counter (a new order
    every epoch) and its open file handle; blocks are split between workers.
    """
    dataset = BlockShuffleDataset(rows, conditions, batch_size, block_rows=block_rows, buffer_blocks=buffer_blocks,
                                  shuffle=shuffle, drop_last=drop_last, seed=0 if seed is None else seed)
    return DataLoader(dataset, batch_size=None, num_workers=num_workers, persistent_workers=num_workers > 0)


# ---------------------------------------------------------------------------------------------------
# The same block shuffle as a step-indexed batch sampler (exact resume and DDP sharding of
# exprflow.data.samplers.StepBatchSampler, which fit_loader binds to the trainer).


def block_shuffled_order(n: int, epoch_seed: list[int], block_rows: int, buffer_blocks: int) -> np.ndarray:
    """A permutation of ``range(n)``: blocks in random order, rows shuffled within windows of ``buffer_blocks`` blocks."""
    rng = np.random.default_rng(epoch_seed)
    blocks = rng.permutation(math.ceil(n / block_rows))
    rows = np.concatenate([np.arange(b * block_rows, min((b + 1) * block_rows, n)) for b in blocks])
    window = block_rows * buffer_blocks
    for lo in range(0, n, window):
        rows[lo : lo + window] = rng.permutation(rows[lo : lo + window])
    return rows


class BlockCachedRows:
    """Row reads through a small cache of whole blocks (for batches drawn from a few blocks at a time).

    ``rows[idx]`` reads each block that ``idx`` touches once (one contiguous read) and keeps the last
    ``capacity`` blocks, so an epoch of block-shuffled batches reads the file about once.
    """

    ndim = 2

    def __init__(self, rows, block_rows: int, capacity: int) -> None:
        self.rows, self.block_rows, self.capacity = rows, int(block_rows), int(capacity)
        self.shape, self.dtype = rows.shape, np.dtype(np.float32)
        self._cache: dict[int, sp.csr_matrix] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_cache": {}}

    def _block(self, b: int) -> sp.csr_matrix:
        if b not in self._cache:
            if len(self._cache) >= self.capacity:
                self._cache.pop(next(iter(self._cache)))  # oldest first
            start = b * self.block_rows
            self._cache[b] = self.rows.read_range(start, min(start + self.block_rows, self.shape[0]))
        return self._cache[b]

    def __getitem__(self, idx) -> sp.csr_matrix:
        idx = np.asarray(idx, dtype=np.int64).ravel()
        blocks = idx // self.block_rows
        order = np.argsort(blocks, kind="stable")
        parts = []
        for b in np.unique(blocks):
            sel = idx[order][blocks[order] == b]
            parts.append(self._block(int(b))[sel - b * self.block_rows])
        stacked = sp.vstack(parts, format="csr")
        return stacked[np.argsort(order, kind="stable")]


class BlockStepBatchSampler(StepBatchSampler):
    """:class:`~exprflow.data.samplers.StepBatchSampler` whose epoch order is :func:`block_shuffled_order`."""

    def __init__(self, n: int, batch_size: int, seed: int = 0, drop_last: bool = True, *,
                 block_rows: int = DEFAULT_BLOCK_ROWS, buffer_blocks: int = DEFAULT_BUFFER_BLOCKS) -> None:
        super().__init__(n, batch_size, seed=seed, drop_last=drop_last)
        self.block_rows, self.buffer_blocks = int(block_rows), int(buffer_blocks)

    def epoch_order(self, epoch: int) -> np.ndarray:
        if self._cache is None or self._cache[0] != epoch:
            order = block_shuffled_order(self.n, [self.seed, int(epoch)], self.block_rows, self.buffer_blocks)
            self._cache = (epoch, order, None)
        return self._cache[1]


def block_step_loader(rows, conditions: np.ndarray | None, batch_size: int, *, seed: int = 0, drop_last: bool = True,
                      block_rows: int = DEFAULT_BLOCK_ROWS, buffer_blocks: int = DEFAULT_BUFFER_BLOCKS,
                      num_workers: int = 0) -> DataLoader:
    """Block-shuffled batches of on-disk rows as a step-indexed ``DataLoader`` for :func:`~exprflow.training.fit.fit_loader`.

    The batch of global step ``k`` is a function of ``(seed, k, rank, world size)`` (exact resume,
    disjoint rows per DDP process), and rows are read a block at a time through :class:`BlockCachedRows`.
    """
    sampler = BlockStepBatchSampler(rows.shape[0], batch_size, seed=seed, drop_last=drop_last,
                                    block_rows=block_rows, buffer_blocks=buffer_blocks)
    dataset = CellDataset(BlockCachedRows(rows, block_rows, buffer_blocks + 1), conditions)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=dataset.collate, num_workers=num_workers,
                      generator=torch.Generator().manual_seed(int(seed)))
