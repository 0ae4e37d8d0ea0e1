"""Helpers for the data-layer tests: a deep before/after check that an AnnData was not modified.

A plain module (not a conftest) so that ``from data_helpers import snapshot`` is unambiguous.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp


def _copy_matrix(matrix: Any) -> Any:
    if matrix is None:
        return None
    if sp.issparse(matrix):
        return matrix.copy()
    if isinstance(matrix, np.ndarray):
        return np.array(matrix, copy=True)
    return matrix[:]  # backed dataset: read it into memory


def _assert_matrix_equal(before: Any, after: Any) -> None:
    if before is None:
        assert after is None
        return
    if sp.issparse(after) or isinstance(after, np.ndarray):
        # same class, up to anndata's view subclasses (a view hands out e.g. SparseCSRMatrixView)
        assert isinstance(after, type(before)) or isinstance(before, type(after))
    else:
        after = after[:]
    assert before.shape == after.shape and before.dtype == after.dtype
    if sp.issparse(before):
        assert before.format == after.format and before.nnz == after.nnz
        for name in ("data", "indices", "indptr", "row", "col"):
            if hasattr(before, name):
                np.testing.assert_array_equal(getattr(before, name), getattr(after, name))
    else:
        np.testing.assert_array_equal(np.asarray(before), np.asarray(after))


def _buffer_ids(matrix: Any) -> list[int]:
    if not sp.issparse(matrix):
        return []
    return [id(getattr(matrix, n)) for n in ("data", "indices", "indptr", "row", "col") if hasattr(matrix, n)]


def snapshot(adata: ad.AnnData) -> Callable[[], None]:
    """Record a deep copy of ``adata``; the returned function asserts that nothing has changed since.

    Compares X and every layer (type, format, dtype, stored arrays), obs, var, their indexes (exact
    index type), obsm/uns keys and uns values, and that in-memory X is still the same object.
    """
    x_obj = None if adata.isbacked or adata.is_view else adata.X  # both hand out a new X object per access
    x_ids = _buffer_ids(x_obj)
    before = {
        "X": _copy_matrix(adata.X),
        "layers": {k: _copy_matrix(v) for k, v in adata.layers.items()},
        "obs": adata.obs.copy(deep=True),
        "var": adata.var.copy(deep=True),
        "obs_names": adata.obs_names.copy(),
        "var_names": adata.var_names.copy(),
        "obsm": list(adata.obsm.keys()),
        "uns": copy.deepcopy(dict(adata.uns)),
        "shape": adata.shape,
    }

    def check() -> None:
        if x_obj is not None:
            assert adata.X is x_obj, "adata.X was replaced"
            assert _buffer_ids(x_obj) == x_ids, "the arrays of sparse adata.X were replaced"
        assert adata.shape == before["shape"]
        _assert_matrix_equal(before["X"], adata.X)
        assert list(adata.layers.keys()) == list(before["layers"])
        for key, value in before["layers"].items():
            _assert_matrix_equal(value, adata.layers[key])
        pd.testing.assert_frame_equal(before["obs"], adata.obs, check_frame_type=False)
        pd.testing.assert_frame_equal(before["var"], adata.var, check_frame_type=False)
        pd.testing.assert_index_equal(before["obs_names"], adata.obs_names, exact=True)
        pd.testing.assert_index_equal(before["var_names"], adata.var_names, exact=True)
        assert list(adata.obsm.keys()) == before["obsm"]
        assert list(adata.uns.keys()) == list(before["uns"])

    return check


def result_or_input_error(adata: ad.AnnData, call: Callable[[], Any]) -> Any:
    """Run ``call()`` (which reads ``adata``) with warnings muted: its result, or ``None`` after an
    :class:`ExprflowInputError` with a message. Either way ``adata`` must come back unmodified, and any
    other exception propagates (a failed property). Records a hypothesis ``event`` for the statistics."""
    import logging

    from hypothesis import event

    from exprflow.errors import ExprflowInputError

    check = snapshot(adata)
    logging.disable(logging.WARNING)
    try:
        result = call()
    except ExprflowInputError as err:
        assert str(err)  # a message the CLI can print
        event("input error")
        return None
    finally:
        logging.disable(logging.NOTSET)
        check()
    event("valid result")
    return result
