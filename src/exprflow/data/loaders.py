"""Mini-batches of cells from a sparse matrix, densified one batch at a time."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader, Dataset

from exprflow.errors import ExprflowInputError

if TYPE_CHECKING:
    from exprflow.data.counts import CountData


def _check_batch_size(batch_size: int) -> int:
    if int(batch_size) < 1:
        raise ExprflowInputError(f"batch_size must be a positive integer, got {batch_size}. Use e.g. batch_size=256.")
    return int(batch_size)


def _dense_rows(X: sp.spmatrix | np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows of ``X`` as a new dense float32 array (only these rows are densified)."""
    block = X[rows]
    block = block.toarray() if sp.issparse(block) else np.array(block)
    return np.ascontiguousarray(block, dtype=np.float32)


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
    batch_size = _check_batch_size(batch_size)
    if sp.issparse(X) and X.format != "csr":
        X = sp.csr_matrix(X)
    n = X.shape[0]
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    for start in range(0, n, batch_size):
        rows = order[start : start + batch_size].astype(np.int64)
        yield rows, _dense_rows(X, rows)


class CellDataset(Dataset):
    """Cells of a CSR matrix (plus optional integer conditions) for a torch ``DataLoader``.

    ``dataset[i]`` is just the row index ``i``; :meth:`collate` turns a list of indices into a batch,
    densifying only those rows: ``{"x": float32 (B, G), "cond": int64 (B,) or None, "index": int64 (B,)}``.
    """

    def __init__(self, X: sp.spmatrix | np.ndarray, conditions: np.ndarray | None = None) -> None:
        if X.ndim != 2:
            raise ExprflowInputError(f"X must be a 2-D cells x genes matrix, got shape {X.shape}.")
        self.X = sp.csr_matrix(X) if sp.issparse(X) and X.format != "csr" else X
        if conditions is not None:
            conditions = np.asarray(conditions)
            if conditions.shape != (X.shape[0],) or not np.issubdtype(conditions.dtype, np.integer):
                raise ExprflowInputError(
                    f"conditions must be one integer code per cell (shape ({X.shape[0]},)), got "
                    f"{conditions.dtype} with shape {conditions.shape}. Pass CountData.conditions."
                )
        self.conditions = conditions

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def __getitem__(self, index: int) -> int:
        return int(index)

    def collate(self, indices: Sequence[int]) -> dict[str, torch.Tensor | None]:
        """Build one batch from row indices (densifies only these rows)."""
        rows = np.asarray(indices, dtype=np.int64)
        return {
            "x": torch.from_numpy(_dense_rows(self.X, rows)),
            "cond": None if self.conditions is None else torch.from_numpy(self.conditions[rows].astype(np.int64)),
            "index": torch.from_numpy(rows),
        }


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
    from exprflow.data.backed import BackedCounts, BackedRows
    from exprflow.data.counts import CountData

    if isinstance(X, (CountData, BackedCounts)):
        conditions = X.conditions if conditions is None else conditions
        X = X.X
    if isinstance(X, BackedRows):  # rows on disk: block-shuffled contiguous reads (exprflow.data.block_shuffle)
        return X.block_loader(conditions, batch_size=_check_batch_size(batch_size), shuffle=shuffle, seed=seed,
                              drop_last=drop_last, num_workers=num_workers)
    dataset = CellDataset(X, conditions)
    generator = None
    if shuffle and seed is not None:
        generator = torch.Generator().manual_seed(int(seed))
    return DataLoader(
        dataset,
        batch_size=_check_batch_size(batch_size),
        shuffle=shuffle,
        drop_last=drop_last,
        collate_fn=dataset.collate,
        generator=generator,
        num_workers=num_workers,
    )
