"""Cells of a matrix as a torch ``Dataset``, densified one batch at a time.

The lowest layer of the loaders: :mod:`exprflow.data.loaders` (in-memory matrices) and
:mod:`exprflow.data.block_shuffle` (rows on disk) both build their batches with :class:`CellDataset`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import Dataset

from exprflow.errors import ExprflowInputError


def check_batch_size(batch_size: int) -> int:
    """``batch_size`` as a positive int; a clear error otherwise."""
    if int(batch_size) < 1:
        raise ExprflowInputError(f"batch_size must be a positive integer, got {batch_size}. Use e.g. batch_size=256.")
    return int(batch_size)


def dense_rows(X: sp.spmatrix | np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows of ``X`` as a new dense float32 array (only these rows are densified)."""
    block = X[rows]
    block = block.toarray() if sp.issparse(block) else np.array(block)
    return np.ascontiguousarray(block, dtype=np.float32)


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
            "x": torch.from_numpy(dense_rows(self.X, rows)),
            "cond": None if self.conditions is None else torch.from_numpy(self.conditions[rows].astype(np.int64)),
            "index": torch.from_numpy(rows),
        }
