"""Mini-batches of cells from a sparse matrix, densified one batch at a time."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader

from exprflow.data.backed import BackedCounts, BackedRows
from exprflow.data.cell_dataset import CellDataset, check_batch_size, dense_rows
from exprflow.data.counts import CountData

__all__ = ["CellDataset", "iter_dense_batches", "make_dataloader"]


def iter_dense_batches(
    X: sp.spmatrix | np.ndarray,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(row_indices, dense_block)`` over all rows of ``X``; ``dense_block[i]`` is row ``row_indices[i]``.

    Only one batch is dense at a time (float32, shape ``(len(row_indices), n_genes)``). With
    ``shuffle`` the rows are visited in a permutation drawn from ``seed``; the last batch may be smaller.
    """
    batch_size = check_batch_size(batch_size)
    if sp.issparse(X) and X.format != "csr":
        X = sp.csr_matrix(X)
    n = X.shape[0]
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    for start in range(0, n, batch_size):
        rows = order[start : start + batch_size].astype(np.int64)
        yield rows, dense_rows(X, rows)


def make_dataloader(
    X: sp.spmatrix | np.ndarray | CountData,
    conditions: np.ndarray | None = None,
    batch_size: int = 256,
    shuffle: bool = True,
    seed: int | None = None,
    drop_last: bool = False,
    num_workers: int = 0,
) -> DataLoader:
    """A ``DataLoader`` over the rows of ``X`` yielding ``dict(x=, cond=, index=)`` (see :class:`CellDataset`).

    ``X`` may be a :class:`~exprflow.data.CountData`, in which case ``conditions`` defaults to its
    ``conditions``. Rows on disk (:class:`~exprflow.data.backed.BackedRows` / ``BackedCounts``) get the
    block-shuffled loader of :mod:`exprflow.data.block_shuffle` instead. With ``shuffle`` and a ``seed`` the sequence of epochs is reproducible.
    """
    if isinstance(X, (CountData, BackedCounts)):
        conditions = X.conditions if conditions is None else conditions
        X = X.X
    if isinstance(X, BackedRows):  # rows on disk: block-shuffled contiguous reads (exprflow.data.block_shuffle)
        return X.block_loader(conditions, batch_size=check_batch_size(batch_size), shuffle=shuffle, seed=seed,
                              drop_last=drop_last, num_workers=num_workers)
    dataset = CellDataset(X, conditions)
    generator = None
    if shuffle and seed is not None:
        generator = torch.Generator().manual_seed(int(seed))
    return DataLoader(
        dataset,
        batch_size=check_batch_size(batch_size),
        shuffle=shuffle,
        drop_last=drop_last,
        collate_fn=dataset.collate,
        generator=generator,
        num_workers=num_workers,
    )
