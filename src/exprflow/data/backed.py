"""Out-of-core training data: a backed ``.h5ad`` read in row chunks, never loaded whole.

:func:`prepare_backed_counts` is the out-of-core twin of :func:`~exprflow.data.prepare_counts`: ONE
streaming pass over row chunks of the on-disk matrix validates the values (same checks and messages,
chunk by chunk), finds the all-zero cells (dropped, as in memory) and computes each cell's library size.
It returns a :class:`BackedCounts`, whose ``X`` is a :class:`BackedRows` reader instead of a CSR matrix:

- ``rows[i0:i1]`` (and sorted or unsorted index arrays) read only those rows, one contiguous HDF5
  slice per run of consecutive cells, as float32 CSR;
- :func:`exprflow.data.make_dataloader` (hence ``fit_plan`` and every model's ``train``) turns a
  ``BackedRows`` into the block-shuffled loader of :mod:`exprflow.data.block_shuffle`.

Memory: O(chunk) for the matrix, plus O(cells) small vectors (library sizes, condition codes, names).
The reader keeps only the file path and opens the file lazily in each process, so it pickles
(DataLoader workers, DDP).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anndata as ad
import h5py
import numpy as np
import scipy.sparse as sp

import exprflow.data.block_shuffle as block_shuffle
from exprflow.data.counts import CellsByGenes, drop_unused_levels
from exprflow.data.io import check_h5ad_path, iter_row_chunks, matrix_label
from exprflow.data.validation import MatrixScan, check_conditions, check_dtype, check_var_names
from exprflow.errors import ExprflowInputError

logger = logging.getLogger(__name__)

#: rows per chunk of the validation pass (a chunk of kang's cells is ~1.4M stored entries)
PASS_CHUNK_ROWS = 2048


def open_backed_matrix(file: h5py.File, layer: str | None, path: str | os.PathLike = "") -> Any:
    """The on-disk matrix ``X`` or ``layers/<layer>`` of an open h5ad file, sliceable by rows.

    CSR groups become anndata's backed sparse dataset (a row slice reads one contiguous range);
    a dense dataset is returned as the h5py dataset. CSC is refused (rows are scattered on disk).
    """
    key = "X" if layer is None else f"layers/{layer}"
    label = matrix_label(layer)
    if key not in file:
        available = list(file["layers"].keys()) if "layers" in file else []
        raise ExprflowInputError(
            f"{label} is not stored in '{path}' (layers on disk: {available or 'none'}). "
            "Pass one of these layers, or layer=None for X."
        )
    elem = file[key]
    if isinstance(elem, h5py.Dataset):
        return elem
    encoding = elem.attrs.get("encoding-type", "")
    if isinstance(encoding, bytes):
        encoding = encoding.decode()
    if encoding == "csc_matrix":
        raise ExprflowInputError(
            f"{label} in '{path}' is stored as CSC (column-major), so one cell's values are scattered "
            "over the whole file and cannot be streamed by rows. Convert it once to CSR, e.g. "
            "a = anndata.read_h5ad(path); a.X = scipy.sparse.csr_matrix(a.X); a.write_h5ad(new_path)."
        )
    if encoding != "csr_matrix":
        raise ExprflowInputError(f"{label} in '{path}' has an unknown on-disk encoding {encoding!r}.")
    return OnDiskCSR(elem)


class OnDiskCSR:
    """Row slices of a CSR matrix stored in an HDF5 group (``data``, ``indices``, ``indptr``, ``shape``).

    Reads go straight to h5py: ``indptr`` is held in memory (8 bytes per cell), a row range costs two
    contiguous reads. (anndata's backed ``sparse_dataset`` costs ~10 ms per slice, too slow per batch.)
    """

    format = "csr"

    def __init__(self, group: h5py.Group) -> None:
        self.data, self.indices = group["data"], group["indices"]
        self.indptr = np.asarray(group["indptr"][...], dtype=np.int64)
        self.shape = tuple(int(s) for s in group.attrs["shape"])
        self.dtype = self.data.dtype

    def to_memory(self) -> sp.csr_matrix:
        return self[0 : self.shape[0]]

    def __getitem__(self, rows: slice) -> sp.csr_matrix:
        start, stop, _ = rows.indices(self.shape[0])
        lo, hi = self.indptr[start], self.indptr[max(stop, start)]
        return sp.csr_matrix((self.data[lo:hi], self.indices[lo:hi], self.indptr[start : max(stop, start) + 1] - lo),
                             shape=(max(stop - start, 0), self.shape[1]))


class BackedRows:
    """Read-only, picklable view of the kept rows of an on-disk matrix (logical row ``i`` = file row ``kept[i]``).

    ``shape``, ``ndim`` and ``dtype`` (float32) behave like a CSR matrix's; indexing returns float32 CSR.
    """

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(self, path: str | os.PathLike, layer: str | None, kept: np.ndarray, n_genes: int) -> None:
        self.path = str(path)
        self.layer = layer
        self.kept = np.asarray(kept, dtype=np.int64)
        self.kept.flags.writeable = False
        self.shape = (int(self.kept.size), int(n_genes))
        self._file: h5py.File | None = None
        self._matrix = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_file"] = state["_matrix"] = None  # reopened lazily in the receiving process
        return state

    @property
    def matrix(self) -> Any:
        """The backed matrix, opened on first use in this process."""
        if self._matrix is None:
            self._file = h5py.File(self.path, "r")
            self._matrix = open_backed_matrix(self._file, self.layer, self.path)
        return self._matrix

    def close(self) -> None:
        """Close the file handle (it is reopened on the next read)."""
        if self._file is not None:
            self._file.close()
        self._file = self._matrix = None

    def read_range(self, start: int, stop: int) -> sp.csr_matrix:
        """Logical rows ``[start, stop)`` as float32 CSR, with one contiguous read from the file."""
        start, stop = max(int(start), 0), min(int(stop), self.shape[0])
        if stop <= start:
            return sp.csr_matrix((0, self.shape[1]), dtype=np.float32)
        lo, hi = int(self.kept[start]), int(self.kept[stop - 1]) + 1
        block = self.matrix[lo:hi]
        block = sp.csr_matrix(block) if sp.issparse(block) else sp.csr_matrix(np.asarray(block))
        if hi - lo != stop - start:  # skip the dropped (all-zero) cells that lie inside the range
            block = block[self.kept[start:stop] - lo]
        return block.astype(np.float32)

    def __getitem__(self, idx) -> sp.csr_matrix:
        if isinstance(idx, slice):
            start, stop, step = idx.indices(self.shape[0])
            if step == 1:
                return self.read_range(start, stop)
            idx = np.arange(start, stop, step)
        rows = np.asarray(idx).ravel()
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        rows = rows.astype(np.int64)
        if rows.size and (rows.min() < -self.shape[0] or rows.max() >= self.shape[0]):
            raise IndexError(f"row index out of range for {self.shape[0]} rows")
        rows = np.where(rows < 0, rows + self.shape[0], rows)
        uniq, inverse = np.unique(rows, return_inverse=True)
        # one read per run of consecutive rows (sorted batches of an ordered pass are a single run)
        breaks = np.flatnonzero(np.diff(uniq) != 1) + 1
        parts = [self.read_range(run[0], run[-1] + 1) for run in np.split(uniq, breaks) if run.size]
        block = sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, self.shape[1]), dtype=np.float32)
        return block[inverse]

    def step_loader(self, conditions: np.ndarray | None, batch_size: int, **kwargs):
        """A block-shuffled, step-indexed loader for ``fit_loader`` (see :func:`exprflow.data.block_shuffle.block_step_loader`)."""
        return block_shuffle.block_step_loader(self, conditions, batch_size, **kwargs)

    def block_loader(self, conditions: np.ndarray | None, **kwargs):
        """A block-shuffled ``DataLoader`` over these rows (see :func:`exprflow.data.block_shuffle.block_loader`)."""
        return block_shuffle.block_loader(self, conditions, **kwargs)


@dataclass(frozen=True, eq=False)
class BackedCounts(CellsByGenes):
    """:class:`~exprflow.data.CountData` for a matrix that stays on disk (same fields; ``X`` is a :class:`BackedRows`).

    ``library_size`` is computed in the streaming pass (float64, read-only), not from ``X``.
    """

    X: BackedRows
    library_size: np.ndarray

    def subset(self, idx: np.ndarray | list[int]) -> BackedCounts:
        """The rows ``idx`` (positions in this object); still on disk. Rows are kept in file order."""
        rows = np.unique(np.asarray(idx, dtype=np.int64))
        if rows.size and (rows[0] < 0 or rows[-1] >= self.n_cells):
            raise ExprflowInputError(f"Cell indices must lie in [0, {self.n_cells}).")
        return replace(
            self,
            X=BackedRows(self.X.path, self.X.layer, self.X.kept[rows], self.n_genes),
            obs_names=[self.obs_names[i] for i in rows],
            conditions=None if self.conditions is None else _read_only(self.conditions[rows]),
            kept=_read_only(self.kept[rows]),
            library_size=_read_only(self.library_size[rows]),
        )


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array


def read_annotations(path: str | os.PathLike) -> ad.AnnData:
    """An AnnData holding only the ``obs`` and ``var`` of an ``.h5ad`` file (no matrix, no layers).

    anndata's backed mode keeps ``X`` on disk but loads every layer into memory; reading the two
    tables alone keeps a layer-holding atlas out of memory too. ``uns['layers_on_disk']`` lists the layers.
    """
    try:
        with h5py.File(path, "r") as file:
            shell = ad.AnnData(obs=ad.io.read_elem(file["obs"]), var=ad.io.read_elem(file["var"]))
            shell.uns["layers_on_disk"] = list(file["layers"].keys()) if "layers" in file else []
    except Exception as err:  # h5py/anndata raise many types for a corrupt or foreign file
        raise ExprflowInputError(
            f"Could not read the obs/var tables of '{path}' ({type(err).__name__}: {err}). Check that it is "
            "a complete AnnData file written by anndata.write_h5ad."
        ) from err
    return shell


def is_backed(adata: Any) -> bool:
    """Whether ``adata`` is an AnnData opened in backed mode (``read_h5ad(..., backed='r')``)."""
    return isinstance(adata, ad.AnnData) and bool(adata.isbacked)


def prepare_backed_counts(
    adata: ad.AnnData | str | os.PathLike,
    *,
    layer: str | None = None,
    condition_key: str | None = None,
    require_counts: bool = True,
    chunk_rows: int | None = None,
) -> BackedCounts:
    """Validate an on-disk matrix in one streaming pass and return a :class:`BackedCounts` over it.

    Parameters
    ----------
    adata
        A backed AnnData (``anndata.read_h5ad(path, backed="r")``) or a path to an ``.h5ad`` file
        (opened backed). Never modified, never loaded whole.
    layer, condition_key, require_counts
        As in :func:`~exprflow.data.prepare_counts` (same checks and error messages).
    chunk_rows
        Rows read per chunk of the streaming pass (default :data:`PASS_CHUNK_ROWS`).
    """
    if isinstance(adata, ad.AnnData):
        if not adata.isbacked:
            raise ExprflowInputError(
                "prepare_backed_counts needs a file-backed AnnData: open it with "
                "anndata.read_h5ad(path, backed='r') or pass the path (in-memory data: use prepare_counts)."
            )
        path = Path(adata.filename)
    else:
        path = check_h5ad_path(adata)
        adata = read_annotations(path)
    label = matrix_label(layer)
    var_names = check_var_names(adata)
    conditions = check_conditions(adata, condition_key)
    with h5py.File(path, "r") as file:
        matrix = open_backed_matrix(file, layer, path)
        n_obs, n_vars = matrix.shape
        if n_obs == 0 or n_vars == 0:
            raise ExprflowInputError(f"{label} is empty ({n_obs} cells x {n_vars} genes).")
        check_dtype(np.dtype(matrix.dtype), label)
        scan, library, n_entries = MatrixScan(), np.empty(n_obs, dtype=np.float64), 0
        for start, chunk in iter_row_chunks(matrix, chunk_rows or PASS_CHUNK_ROWS):
            chunk32 = scan.update(chunk, start)
            library[start : start + chunk32.shape[0]] = np.asarray(chunk32.sum(axis=1, dtype=np.float64)).ravel()
            n_entries += chunk.nnz
    scan.raise_errors(label=label, obs_names=adata.obs_names, var_names=adata.var_names, n_entries=n_entries,
                      require_counts=require_counts, has_counts_layer="counts" in adata.layers
                      or "counts" in adata.uns.get("layers_on_disk", []))
    kept = np.flatnonzero(library != 0).astype(np.int64)
    if kept.size == 0:
        raise ExprflowInputError(
            f"All {n_obs} cells in {label} have zero total counts, so there is nothing to train on. "
            "Check that you passed the layer that holds the expression values (e.g. layer='counts')."
        )
    n_dropped = n_obs - kept.size
    if n_dropped:
        logger.warning("Dropped %d of %d cells whose values in %s are all zero (they carry no expression).",
                       n_dropped, n_obs, label)
    codes, levels = (None, None) if conditions is None else conditions
    if codes is not None:
        codes, levels = drop_unused_levels(codes[kept], levels, condition_key)
    logger.info("out-of-core data: %d cells x %d genes on disk (%s), %d stored entries", kept.size, n_vars,
                path, n_entries)
    return BackedCounts(
        X=BackedRows(path, layer, kept, n_vars), var_names=var_names,
        obs_names=[str(n) for n in adata.obs_names[kept]], conditions=codes, condition_levels=levels,
        condition_key=condition_key, layer=layer, is_counts=scan.is_counts, n_dropped_cells=int(n_dropped),
        kept=_read_only(kept), library_size=_read_only(library[kept]),
    )
