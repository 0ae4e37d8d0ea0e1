"""Checks on an AnnData before training: gene names, condition labels and matrix values.

Every failed check raises :class:`~exprflow.errors.ExprflowInputError` with a message that says what
is wrong and how to fix it. Nothing here modifies the AnnData.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from exprflow.errors import ExprflowInputError

logger = logging.getLogger(__name__)

#: A float value counts as an integer when it is within this distance of its rounding.
INTEGER_TOLERANCE = 1e-6

_COUNTS_HINT = (
    "Raw counts usually live in adata.layers['counts'] (pass layer='counts'); for log-normalised, "
    "scaled or FPKM/TPM data use require_counts=False (a non-count path)."
)


def _examples(values: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (", ..." if len(values) > limit else "")


def check_var_names(adata: ad.AnnData) -> list[str]:
    """Return the gene names as a list of str; reject non-string or duplicated names."""
    names = adata.var_names
    if isinstance(names, pd.CategoricalIndex):
        names = pd.Index(np.asarray(names, dtype=object))
    bad = [v for v in names if not isinstance(v, str)]
    if bad:
        raise ExprflowInputError(
            f"adata.var_names must be strings (gene names), but {len(bad)} of {len(names)} are not "
            f"(e.g. {_examples(bad, 3)} of type {type(bad[0]).__name__}). Convert them on a copy: "
            "adata.var_names = adata.var_names.astype(str)."
        )
    duplicated = names[names.duplicated(keep="first")]
    if len(duplicated):
        unique_dups = list(dict.fromkeys(duplicated))
        raise ExprflowInputError(
            f"adata.var_names has {len(duplicated)} duplicated gene name(s) "
            f"({len(unique_dups)} distinct, e.g. {_examples(unique_dups)}). Gene names must be unique: "
            "call adata.var_names_make_unique() (it appends '-1', '-2', ...) or aggregate the duplicates."
        )
    return list(names)


def check_conditions(adata: ad.AnnData, condition_key: str | None) -> tuple[np.ndarray, list[str]] | None:
    """Integer codes (one per cell, all cells) and level names for ``adata.obs[condition_key]``.

    Levels follow the pandas categorical order for a categorical column (unused categories are
    dropped), numeric order for a numeric column, and sorted string order otherwise. Returns ``None``
    when ``condition_key`` is ``None``.
    """
    if condition_key is None:
        return None
    if not isinstance(condition_key, str):
        raise ExprflowInputError(
            f"condition_key must be the name of ONE obs column, got {condition_key!r}. To condition on several "
            "columns, combine them into one first, e.g. adata.obs['group'] = adata.obs['a'].astype(str) + '_' + "
            "adata.obs['b'].astype(str), and pass condition_key='group'.")
    if condition_key not in adata.obs.columns:
        columns = list(adata.obs.columns)
        raise ExprflowInputError(
            f"condition_key '{condition_key}' is not a column of adata.obs (available columns: "
            f"{columns if columns else 'none'}). Pass one of these columns, or condition_key=None for "
            "unconditional training."
        )
    column = adata.obs[condition_key]
    missing = column.isna().to_numpy()
    if missing.any():
        raise ExprflowInputError(
            f"adata.obs['{condition_key}'] is missing (NaN/None) for {int(missing.sum())} of "
            f"{len(column)} cells (e.g. cell {str(adata.obs_names[np.flatnonzero(missing)[0]])!r}). "
            f"Filter those cells first: adata = adata[adata.obs['{condition_key}'].notna()].copy(), "
            "or fill them with a label of their own."
        )
    if isinstance(column.dtype, pd.CategoricalDtype):
        cat = column.cat.remove_unused_categories()
        codes = cat.cat.codes.to_numpy().astype(np.int64)
        levels = [str(c) for c in cat.cat.categories]
    else:
        values = column.to_numpy()
        uniques = pd.unique(values)
        if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
            uniques = np.sort(uniques)
        else:
            uniques = sorted(uniques, key=str)
        lookup = {u: i for i, u in enumerate(uniques)}
        codes = np.fromiter((lookup[v] for v in values), dtype=np.int64, count=len(values))
        levels = [str(u) for u in uniques]
    if len(set(levels)) != len(levels):
        raise ExprflowInputError(
            f"adata.obs['{condition_key}'] has distinct values that print the same "
            f"({_examples(levels)}), e.g. 1 and '1'. Make the column one type first: "
            f"adata.obs['{condition_key}'] = adata.obs['{condition_key}'].astype(str)."
        )
    if len(levels) == 1:
        logger.warning(
            "adata.obs['%s'] has a single level (%r): conditional training will learn nothing from it.",
            condition_key,
            levels[0],
        )
    return codes, levels


@dataclass
class _Finding:
    """How many entries failed one check, and the first offending entry."""

    count: int = 0
    example: tuple[int, int, float] | None = None  # (row, column, value)

    def add(self, mask: np.ndarray, chunk: sp.csr_matrix, start: int, values: np.ndarray) -> None:
        n = int(np.count_nonzero(mask))
        if n and self.example is None:
            pos = int(np.flatnonzero(mask)[0])
            row = int(np.searchsorted(chunk.indptr, pos, side="right") - 1)
            self.example = (start + row, int(chunk.indices[pos]), float(values[pos]))
        self.count += n


@dataclass
class MatrixScan:
    """Accumulates value checks over row chunks of one matrix (see :meth:`update`)."""

    n_nan: int = 0
    n_inf: int = 0
    nonfinite: _Finding = field(default_factory=_Finding)
    negative: _Finding = field(default_factory=_Finding)
    noninteger: _Finding = field(default_factory=_Finding)

    def update(self, chunk: sp.csr_matrix, start: int) -> sp.csr_matrix:
        """Check one chunk (in its original dtype) and return it as float32."""
        data = chunk.data
        with np.errstate(over="ignore", invalid="ignore"):
            out = chunk.astype(np.float32)
        finite = np.isfinite(out.data)  # also catches values beyond float32 range
        if not finite.all():
            self.n_nan += int(np.isnan(out.data).sum())
            self.n_inf += int((~finite).sum() - np.isnan(out.data).sum())
            self.nonfinite.add(~finite, chunk, start, data)
        if np.issubdtype(data.dtype, np.bool_) or np.issubdtype(data.dtype, np.unsignedinteger):
            return out
        with np.errstate(invalid="ignore"):
            self.negative.add(finite & (data < 0), chunk, start, data)
            if np.issubdtype(data.dtype, np.floating):
                off = np.abs(data - np.round(data)) > INTEGER_TOLERANCE
                self.noninteger.add(finite & off, chunk, start, data)
        return out

    @property
    def is_counts(self) -> bool:
        """Whether every finite value seen is a non-negative integer."""
        return self.negative.count == 0 and self.noninteger.count == 0

    def raise_errors(
        self,
        *,
        label: str,
        obs_names: pd.Index,
        var_names: pd.Index,
        n_entries: int,
        require_counts: bool,
        has_counts_layer: bool,
    ) -> None:
        """Raise the first failed check as an :class:`ExprflowInputError`."""

        def where(f: _Finding) -> str:
            row, col, value = f.example
            return f"{value!r} at cell {str(obs_names[row])!r}, gene {str(var_names[col])!r}"

        if self.nonfinite.count:
            raise ExprflowInputError(
                f"{label} contains {self.nonfinite.count} non-finite value(s) ({self.n_nan} NaN, "
                f"{self.n_inf} infinite or beyond float32 range) among {n_entries} stored entries, e.g. "
                f"{where(self.nonfinite)}. Training needs finite values: fix or drop those cells/genes "
                "upstream, or pass the layer that holds the raw counts (e.g. layer='counts')."
            )
        if not require_counts:
            return
        hint = _COUNTS_HINT
        if has_counts_layer and label != "adata.layers['counts']":
            hint = "This AnnData has a 'counts' layer: pass layer='counts'. " + _COUNTS_HINT
        if self.negative.count:
            raise ExprflowInputError(
                f"{label} does not hold raw counts: it has {self.negative.count} negative value(s), e.g. "
                f"{where(self.negative)}. Counts must be non-negative integers (this looks like scaled "
                f"or centred data). {hint}"
            )
        if self.noninteger.count:
            raise ExprflowInputError(
                f"{label} does not hold raw counts: it has {self.noninteger.count} non-integer value(s), "
                f"e.g. {where(self.noninteger)}. Counts must be non-negative integers (this looks like "
                f"normalised or log-transformed data). {hint}"
            )


def check_dtype(dtype: np.dtype, label: str) -> None:
    """Reject matrices that are not real numbers (object, string, complex)."""
    if not (np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_)) or np.issubdtype(
        dtype, np.complexfloating
    ):
        raise ExprflowInputError(
            f"{label} has dtype {dtype}, but expression values must be real numbers. Convert the "
            "matrix to a numeric type first (e.g. counts.astype('float32')), or pass another layer."
        )
