"""Data layer: AnnData in, validated counts, train/test splits and mini-batches out.

- :func:`read_adata` reads an ``.h5ad`` file (or passes an AnnData through).
- :func:`prepare_counts` validates a matrix and returns an immutable :class:`CountData`.
- :func:`split_indices` makes the stratified 80/20 split of docs/evaluation.md.
- :func:`iter_dense_batches`, :class:`CellDataset` and :func:`make_dataloader` densify one batch at a time.
"""

from __future__ import annotations

from exprflow.data.counts import CountData, prepare_counts
from exprflow.data.io import iter_row_chunks, read_adata
from exprflow.data.loaders import CellDataset, iter_dense_batches, make_dataloader
from exprflow.data.splits import split_indices

__all__ = [
    "CellDataset",
    "CountData",
    "iter_dense_batches",
    "iter_row_chunks",
    "make_dataloader",
    "prepare_counts",
    "read_adata",
    "split_indices",
]
