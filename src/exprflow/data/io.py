"""Reading AnnData and streaming its matrices in row chunks (in memory or backed on disk)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import anndata as ad
import numpy as np
import scipy.sparse as sp

from exprflow.errors import ExprflowInputError

#: Upper bound on the number of matrix entries (rows x genes) read per chunk of a dense matrix,
#: and on rows x genes / 8 for a sparse one. Keeps temporaries small on big matrices.
CHUNK_ELEMENTS = 2**23


def read_adata(data: str | os.PathLike | ad.AnnData, *, backed: Literal["r"] | None = None) -> ad.AnnData:
    """Return an AnnData from a path to an ``.h5ad`` file, or pass an AnnData through unchanged.

    Parameters
    ----------
    data
        Path to an ``.h5ad`` file, or an :class:`~anndata.AnnData` (returned as is, not copied).
    backed
        ``"r"`` opens the file read-only in backed mode (``X`` stays on disk; see :func:`iter_row_chunks`).

    Raises
    ------
    ExprflowInputError
        If the path does not exist, is not an ``.h5ad`` file, or cannot be read.
    """
    if isinstance(data, ad.AnnData):
        return data
    path = check_h5ad_path(data)
    try:
        return ad.read_h5ad(path, backed=backed)
    except Exception as err:  # h5py/anndata raise many types for a corrupt file
        raise ExprflowInputError(
            f"Could not read '{path}' as an .h5ad file ({type(err).__name__}: {err}). "
            "Check that the file is a complete AnnData file written by anndata.write_h5ad "
            "(a partial download or another HDF5 layout cannot be read)."
        ) from err


def check_h5ad_path(data: str | os.PathLike) -> Path:
    """``data`` as a ``Path`` to an existing ``.h5ad`` file; otherwise an :class:`ExprflowInputError` saying why."""
    if not isinstance(data, (str, os.PathLike)):
        raise ExprflowInputError(
            f"Expected a path to an .h5ad file or an AnnData object, got {type(data).__name__}. "
            "Pass a file path (e.g. 'data/pbmc.h5ad') or an anndata.AnnData."
        )
    path = Path(data).expanduser()
    if not path.exists():
        raise ExprflowInputError(
            f"File not found: '{path}' (resolved to '{path.resolve()}'). "
            "Check the spelling and the working directory, or pass an absolute path."
        )
    if path.is_dir():
        raise ExprflowInputError(
            f"'{path}' is a directory, not an .h5ad file. Pass the path of the .h5ad file itself "
            "(for a 10x folder, convert it first: scanpy.read_10x_mtx(folder).write_h5ad('data.h5ad'))."
        )
    if path.suffix.lower() != ".h5ad":
        raise ExprflowInputError(
            f"'{path}' is not an .h5ad file (suffix '{path.suffix or '<none>'}'). exprflow reads AnnData "
            "files; convert your data first, e.g. scanpy.read_csv / read_loom / read_10x_h5(...)"
            ".write_h5ad('data.h5ad')."
        )
    return path


def matrix_label(layer: str | None) -> str:
    """Human-readable name of the matrix a ``layer`` argument selects."""
    return "adata.X" if layer is None else f"adata.layers['{layer}']"


def get_matrix(adata: ad.AnnData, layer: str | None) -> Any:
    """The matrix selected by ``layer`` (``None`` = ``adata.X``), without copying or loading it.

    Raises
    ------
    ExprflowInputError
        If the layer does not exist, or ``adata.X`` is ``None``.
    """
    if layer is None:
        matrix = adata.X
        if matrix is None:
            available = list(adata.layers.keys())
            raise ExprflowInputError(
                "adata.X is empty (None), so there is no matrix to read. "
                + (
                    f"Pass one of the layers instead: layer={available[0]!r} (available: {available})."
                    if available
                    else "Store the counts in adata.X or in a layer, e.g. adata.layers['counts'] = counts."
                )
            )
        return matrix
    if not isinstance(layer, str):
        raise ExprflowInputError(
            f"layer must be a layer name (str) or None, got {type(layer).__name__} {layer!r}. "
            "Pass e.g. layer='counts', or layer=None to use adata.X."
        )
    if layer not in adata.layers:
        available = list(adata.layers.keys())
        raise ExprflowInputError(
            f"Layer '{layer}' not found in adata.layers (available layers: "
            f"{available if available else 'none'}). Pass one of the available layers, "
            "or layer=None to use adata.X."
        )
    return adata.layers[layer]


def _chunk_rows(matrix: Any, n_genes: int) -> int:
    per_row = max(n_genes, 1)
    if sp.issparse(matrix) or _is_backed_sparse(matrix):
        return max(1, (CHUNK_ELEMENTS * 8) // per_row)
    return max(1, CHUNK_ELEMENTS // per_row)


def _is_backed_sparse(matrix: Any) -> bool:
    return hasattr(matrix, "format") and hasattr(matrix, "to_memory") and not sp.issparse(matrix)


def matrix_dtype(matrix: Any) -> np.dtype:
    """The dtype of an in-memory or backed matrix."""
    dtype = getattr(matrix, "dtype", None)
    if dtype is None:
        return np.asarray(matrix[:1]).dtype
    return np.dtype(dtype)


def iter_row_chunks(matrix: Any, chunk_rows: int | None = None) -> Iterator[tuple[int, sp.csr_matrix]]:
    """Yield ``(start_row, chunk)`` with each chunk a new CSR matrix in the matrix's own dtype.

    Works for dense numpy arrays, scipy sparse matrices/arrays (CSR, CSC, COO, ...), and backed
    datasets (h5py dense datasets and anndata's backed sparse datasets), reading only one chunk of
    rows at a time from disk. The input is never modified; a whole dense matrix is never made.
    """
    n_rows, n_cols = matrix.shape
    step = chunk_rows or _chunk_rows(matrix, n_cols)
    if sp.issparse(matrix) and matrix.format != "csr":
        matrix = sp.csr_matrix(matrix)  # one copy in CSR so row slicing is cheap; never the user's object
    for start in range(0, n_rows, step):
        block = matrix[start : start + step]
        if sp.issparse(block):
            # csr_matrix(sparse) may share buffers with the input: copy so later steps can't write back
            chunk = sp.csr_matrix(block, copy=True)
        else:
            chunk = sp.csr_matrix(np.asarray(block))
        yield start, chunk
