"""``CountData``: the validated, immutable training view of an AnnData, and ``prepare_counts``."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import anndata as ad
import numpy as np
import scipy.sparse as sp

from exprflow.data.io import get_matrix, iter_row_chunks, matrix_dtype, matrix_label, read_adata
from exprflow.data.validation import MatrixScan, check_conditions, check_dtype, check_var_names
from exprflow.errors import ExprflowInputError

logger = logging.getLogger(__name__)


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def warn_thin_training_data(data) -> None:
    """Warn (training data) about condition levels with a single cell (a flow cannot learn a
    distribution from one cell; guidance towards it repeats that cell) and about genes that are zero
    in every cell (the model learns to generate nothing for them)."""
    if data.conditions is not None and data.condition_levels:
        sizes = np.bincount(data.conditions, minlength=len(data.condition_levels))
        single = [data.condition_levels[i] for i in np.flatnonzero(sizes == 1)]
        if single:
            logger.warning(
                "Condition level(s) %s of '%s' have a single cell; the model cannot learn their distribution. "
                "Merge or drop them, or collect more cells.", single[:10], data.condition_key)
    if sp.issparse(data.X):
        zero = np.flatnonzero(np.bincount(data.X.indices, minlength=data.X.shape[1]) == 0)
        if zero.size:
            logger.warning(
                "%d of %d genes are zero in every cell (e.g. %s); they will be generated as zeros. Filter them "
                "out first (e.g. scanpy.pp.filter_genes(adata, min_cells=1)) if that is not intended.",
                zero.size, data.X.shape[1], [data.var_names[i] for i in zero[:3]])


@dataclass(frozen=True, eq=False)
class CellsByGenes:
    """The fields shared by :class:`CountData` (in memory) and ``BackedCounts`` (on disk), and their
    ``n_cells``, ``n_genes`` and ``n_levels``. Subclasses narrow the type of ``X``."""

    X: Any
    var_names: list[str]
    obs_names: list[str]
    conditions: np.ndarray | None
    condition_levels: list[str] | None
    condition_key: str | None
    layer: str | None
    is_counts: bool
    n_dropped_cells: int
    kept: np.ndarray

    @property
    def n_cells(self) -> int:
        """Number of (kept) cells, the rows of ``X``."""
        return int(self.X.shape[0])

    @property
    def n_genes(self) -> int:
        """Number of genes, the columns of ``X``."""
        return int(self.X.shape[1])

    @property
    def n_levels(self) -> int:
        """Number of condition levels (0 without a condition key)."""
        return 0 if self.condition_levels is None else len(self.condition_levels)


def drop_unused_levels(codes: np.ndarray, levels: list[str], condition_key: str | None) -> tuple[np.ndarray, list[str]]:
    """Condition codes and levels without the levels that have no cell left (codes renumbered, read-only)."""
    used = np.unique(codes)
    if used.size < len(levels):
        logger.warning(
            "Condition level(s) %s of '%s' have no cells left after dropping empty cells; removed.",
            [levels[i] for i in np.setdiff1d(np.arange(len(levels)), used)],
            condition_key,
        )
        remap = np.full(len(levels), -1, dtype=np.int64)
        remap[used] = np.arange(used.size)
        codes, levels = remap[codes], [levels[i] for i in used]
    return _read_only(np.ascontiguousarray(codes, dtype=np.int64)), levels


@dataclass(frozen=True, eq=False)
class CountData(CellsByGenes):
    """Validated expression matrix of the kept cells, ready for training.

    Built by :func:`prepare_counts`; it owns its arrays (never the user's objects) and marks them
    read-only, so it cannot be changed after validation. Use :meth:`subset` for train/test parts.

    Attributes
    ----------
    X
        float32 CSR matrix, cells x genes, kept cells only, canonical (sorted indices, no explicit zeros).
    var_names, obs_names
        Gene and cell names (str), in the order of the columns and rows of ``X``.
    conditions
        int64 code per cell in ``[0, len(condition_levels))``, or ``None`` without a condition key.
    condition_levels
        Level names in code order, or ``None``.
    condition_key, layer
        The ``obs`` column and the layer (``None`` = ``adata.X``) the data came from.
    is_counts
        Whether every value is a non-negative integer (always true with ``require_counts=True``).
    n_dropped_cells
        Cells of the AnnData dropped because all their values were zero.
    kept
        Row index in the original AnnData of every row of ``X`` (int64).
    """

    X: sp.csr_matrix

    def __post_init__(self) -> None:
        n_cells, n_genes = self.X.shape
        if not (sp.issparse(self.X) and self.X.format == "csr" and self.X.dtype == np.float32):
            raise TypeError("CountData.X must be a float32 CSR matrix")
        if len(self.var_names) != n_genes or len(self.obs_names) != n_cells or len(self.kept) != n_cells:
            raise ValueError("CountData: names/kept do not match the shape of X")
        if (self.conditions is None) != (self.condition_levels is None):
            raise ValueError("CountData: conditions and condition_levels must both be set or both be None")
        if self.conditions is not None and len(self.conditions) != n_cells:
            raise ValueError("CountData: one condition code per cell is required")

    @cached_property
    def library_size(self) -> np.ndarray:
        """Per-cell sum of ``X`` (float64, read-only)."""
        return _read_only(np.asarray(self.X.sum(axis=1, dtype=np.float64)).ravel())

    def subset(self, idx: np.ndarray | list[int] | slice) -> CountData:
        """A new ``CountData`` with the rows ``idx`` (positions in this object, or a boolean mask).

        Condition codes and levels are kept as they are (a level may have no cells in a subset), so
        codes mean the same thing in every subset. ``kept`` still refers to the original AnnData.
        """
        if isinstance(idx, slice):
            rows = np.arange(self.n_cells)[idx]
        else:
            rows = np.asarray(idx)
            if rows.dtype == bool:
                if rows.shape != (self.n_cells,):
                    raise ExprflowInputError(
                        f"Boolean mask has shape {rows.shape}, expected ({self.n_cells},): one entry per cell."
                    )
                rows = np.flatnonzero(rows)
            rows = rows.astype(np.int64, copy=False).ravel()
            if rows.size and (rows.min() < -self.n_cells or rows.max() >= self.n_cells):
                raise ExprflowInputError(
                    f"Cell indices must lie in [0, {self.n_cells}), got min {rows.min()} and max {rows.max()}."
                )
        return replace(
            self,
            X=_freeze_matrix(self.X[rows]),
            obs_names=[self.obs_names[i] for i in rows],
            conditions=None if self.conditions is None else _read_only(self.conditions[rows]),
            kept=_read_only(self.kept[rows]),
        )


def _freeze_matrix(X: sp.spmatrix) -> sp.csr_matrix:
    X = sp.csr_matrix(X, dtype=np.float32)
    X.sum_duplicates()  # also sorts indices, so scipy never needs to write to the arrays later
    for array in (X.data, X.indices, X.indptr):
        array.flags.writeable = False
    return X


def prepare_counts(
    adata: ad.AnnData | str | os.PathLike,
    *,
    layer: str | None = None,
    condition_key: str | None = None,
    require_counts: bool = True,
) -> CountData:
    """Validate an AnnData's expression matrix and return a :class:`CountData` copy for training.

    Parameters
    ----------
    adata
        An AnnData (in memory or backed, ``read_h5ad(..., backed='r')``) or a path to an ``.h5ad`` file.
        It is never modified. Dense, CSR, CSC and COO matrices are accepted; sparse stays sparse and
        backed matrices are read in row chunks.
    layer
        Layer holding the expression values; ``None`` uses ``adata.X``.
    condition_key
        Column of ``adata.obs`` with a label per cell (e.g. cell type); ``None`` for no conditions.
    require_counts
        Require non-negative integer values (raw counts). Set ``False`` for log-normalised or FPKM
        data; NaN and infinite values are rejected either way.

    Returns
    -------
    CountData
        Cells whose values are all zero are dropped (a warning gives their number).

    Raises
    ------
    ExprflowInputError
        For a missing layer or obs column, an empty matrix, non-string or duplicated gene names,
        missing condition labels, NaN/infinite values, non-count values (with ``require_counts``),
        or when every cell is empty. The message says how to fix it.
    """
    adata = read_adata(adata)
    label = matrix_label(layer)
    matrix = get_matrix(adata, layer)
    n_obs, n_vars = matrix.shape
    if n_obs == 0 or n_vars == 0:
        raise ExprflowInputError(
            f"{label} is empty ({n_obs} cells x {n_vars} genes). Check earlier filtering steps "
            "(e.g. sc.pp.filter_cells / filter_genes thresholds) or the layer you passed."
        )
    var_names = check_var_names(adata)
    conditions = check_conditions(adata, condition_key)
    check_dtype(matrix_dtype(matrix), label)

    scan = MatrixScan()
    chunks = [scan.update(chunk, start) for start, chunk in iter_row_chunks(matrix)]
    scan.raise_errors(
        label=label,
        obs_names=adata.obs_names,
        var_names=adata.var_names,
        n_entries=sum(c.nnz for c in chunks),
        require_counts=require_counts,
        has_counts_layer="counts" in adata.layers,
    )
    X = chunks[0] if len(chunks) == 1 else sp.vstack(chunks, format="csr", dtype=np.float32)
    del chunks
    X.eliminate_zeros()

    kept = np.flatnonzero(np.diff(X.indptr) > 0).astype(np.int64)
    n_dropped = n_obs - kept.size
    if kept.size == 0:
        raise ExprflowInputError(
            f"All {n_obs} cells in {label} have zero total counts, so there is nothing to train on. "
            "Check that you passed the layer that holds the expression values (e.g. layer='counts')."
        )
    if n_dropped:
        logger.warning(
            "Dropped %d of %d cells whose values in %s are all zero (they carry no expression).",
            n_dropped,
            n_obs,
            label,
        )
        X = X[kept]

    codes, levels = (None, None) if conditions is None else conditions
    if codes is not None:
        codes, levels = drop_unused_levels(codes[kept], levels, condition_key)

    obs_names = adata.obs_names[kept] if n_dropped else adata.obs_names
    return CountData(
        X=_freeze_matrix(X),
        var_names=var_names,
        obs_names=[str(n) for n in obs_names],
        conditions=codes,
        condition_levels=levels,
        condition_key=condition_key,
        layer=layer,
        is_counts=scan.is_counts,
        n_dropped_cells=int(n_dropped),
        kept=_read_only(kept),
    )
