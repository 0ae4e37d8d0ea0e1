"""Time courses in the data layer: a validated time per cell, optional lineage weights, ordered levels.

Single-cell data are snapshots: each cell is measured once, at one (pseudo)time. A time course is the
expression matrix plus one time per cell from ``adata.obs[time_key]``; the distinct times, sorted, are
the *time levels* (the positions of the sequences that :mod:`exprflow.flows.trajectories` builds).

- ``time_key`` may be numeric (hours, pseudotime) or an ordered categorical (e.g. ``"early" < "late"``).
  A categorical whose categories are numbers (AnnData often stores ``Hours`` 0/24/48/72 that way) is
  read as numbers. Unordered text categories, NaN times, a missing column and a single time level are
  rejected with a message saying how to fix them.
- Continuous pseudotime is cut into ``n_bins`` ordered bins of equal cell counts (quantiles over the
  kept cells); a bin's time is the mean pseudotime of its cells.
- ``weight_key`` names a lineage weight per cell (slingshot's ``weight_lineage1``): cells with weight
  below ``min_weight`` are not on the lineage and are dropped; the others keep their weight (OT mass).

Nothing here modifies the AnnData.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd

from exprflow.data.counts import CountData, prepare_counts
from exprflow.errors import ExprflowInputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class TimeCourse:
    """Validated cells of a time course (built by :func:`prepare_timecourse`).

    Attributes
    ----------
    data
        The expression values of the kept cells (:class:`~exprflow.data.CountData`).
    time_levels
        Sorted distinct times (float), one per sequence position.
    time_labels
        How each level is named in the user's data (e.g. ``"24"``, ``"late"``, ``"bin3"``).
    time_codes
        Level index per kept cell (int64).
    weights
        Lineage weight per kept cell (float64, all > 0), or ``None`` (every cell weighs 1).
    time_key, weight_key
        The ``obs`` columns the times (and weights) came from.
    """

    data: CountData
    time_levels: np.ndarray
    time_labels: list[str]
    time_codes: np.ndarray
    weights: np.ndarray | None
    time_key: str
    weight_key: str | None

    @property
    def n_levels(self) -> int:
        """Number of time levels."""
        return len(self.time_levels)

    def cells_at(self, level: int) -> np.ndarray:
        """Row indices (in ``data``) of the cells at time level ``level``."""
        return np.flatnonzero(self.time_codes == level)


def _missing_key(adata: ad.AnnData, key: str, what: str) -> ExprflowInputError:
    columns = list(adata.obs.columns)
    return ExprflowInputError(
        f"{what} '{key}' is not a column of adata.obs (available columns: {columns if columns else 'none'}). "
        "Pass the obs column that holds each cell's time point or pseudotime."
    )


def time_values(adata: ad.AnnData, time_key: str) -> tuple[np.ndarray, list[str] | None]:
    """Numeric time per cell of ``adata.obs[time_key]`` and, for ordered text categories, their names.

    Returns ``(values, labels)``: ``values`` float64 (one per cell); ``labels`` is the category list
    for an ordered categorical of text (then ``values`` holds the category codes) and ``None``
    otherwise. Raises :class:`ExprflowInputError` for a missing column, NaN times, unordered text
    categories or a non-numeric, non-categorical column.
    """
    if time_key is None:
        raise ExprflowInputError("time_key is required: name the obs column holding each cell's time point.")
    if time_key not in adata.obs.columns:
        raise _missing_key(adata, time_key, "time_key")
    column = adata.obs[time_key]
    missing = column.isna().to_numpy()
    if missing.any():
        first = str(adata.obs_names[np.flatnonzero(missing)[0]])
        raise ExprflowInputError(
            f"adata.obs['{time_key}'] is missing (NaN/None) for {int(missing.sum())} of {len(column)} cells "
            f"(e.g. cell {first!r}). A time course needs a time for every cell: filter them first, "
            f"adata = adata[adata.obs['{time_key}'].notna()].copy()."
        )
    if isinstance(column.dtype, pd.CategoricalDtype):
        categories = column.cat.categories
        if pd.api.types.is_numeric_dtype(categories.dtype) and not pd.api.types.is_bool_dtype(categories.dtype):
            return np.asarray(column.astype(categories.dtype), dtype=np.float64), None
        if not column.cat.ordered:
            raise ExprflowInputError(
                f"adata.obs['{time_key}'] is an unordered categorical ({list(categories[:5])}), so its time "
                "order is unknown. Make it ordered on a copy, e.g. adata.obs[key] = adata.obs[key].cat."
                "reorder_categories([...], ordered=True), or give numeric times."
            )
        codes = column.cat.codes.to_numpy().astype(np.float64)
        return codes, [str(c) for c in categories]
    if pd.api.types.is_bool_dtype(column.dtype) or not pd.api.types.is_numeric_dtype(column.dtype):
        raise ExprflowInputError(
            f"adata.obs['{time_key}'] holds {column.dtype} values, not times. Give numeric times (hours, "
            "pseudotime) or an ordered categorical."
        )
    values = np.asarray(column, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ExprflowInputError(f"adata.obs['{time_key}'] has infinite values; give finite times.")
    return values, None


def lineage_weights(adata: ad.AnnData, weight_key: str) -> np.ndarray:
    """Lineage weight per cell from ``adata.obs[weight_key]`` (finite, non-negative)."""
    if weight_key not in adata.obs.columns:
        raise _missing_key(adata, weight_key, "weight_key")
    column = adata.obs[weight_key]
    if not pd.api.types.is_numeric_dtype(column.dtype):
        raise ExprflowInputError(f"adata.obs['{weight_key}'] must hold numeric lineage weights, got {column.dtype}.")
    w = np.asarray(column, dtype=np.float64)
    if not np.isfinite(w).all() or (w < 0).any():
        raise ExprflowInputError(f"adata.obs['{weight_key}'] must be finite and non-negative (lineage weights).")
    return w


def quantile_bins(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin code in ``[0, n_bins)`` per value: ``n_bins`` ordered bins of (nearly) equal counts.

    Ranks break ties by position, so equal values may fall in neighbouring bins; every bin is non-empty
    when ``len(values) >= n_bins``.
    """
    n = len(values)
    if n_bins < 2 or n < n_bins:
        raise ExprflowInputError(f"n_bins must lie in [2, {n}] (the number of cells), got {n_bins}.")
    ranks = np.empty(n, dtype=np.int64)
    ranks[np.argsort(values, kind="stable")] = np.arange(n)
    return (ranks * n_bins) // n


def prepare_timecourse(
    adata: ad.AnnData,
    time_key: str,
    *,
    layer: str | None = None,
    weight_key: str | None = None,
    min_weight: float = 0.5,
    n_bins: int | None = None,
) -> TimeCourse:
    """Validate expression values and times and return a :class:`TimeCourse` (the AnnData is not modified).

    Parameters
    ----------
    adata
        cells x genes; counts or non-count values (FPKM, log data) in ``X`` or ``layer``.
    time_key
        obs column with each cell's time (numeric or ordered categorical).
    layer
        layer holding the values (None: ``X``).
    weight_key
        obs column with a lineage weight per cell; cells below ``min_weight`` are dropped.
    n_bins
        cut numeric (pseudo)time into this many ordered bins of equal cell counts.

    Raises
    ------
    ExprflowInputError
        see :func:`time_values`; also fewer than two time levels, binning of
        categorical times, or no cell left on the lineage.
    """
    values, labels = time_values(adata, time_key)
    weights = lineage_weights(adata, weight_key) if weight_key is not None else None
    data = prepare_counts(adata, layer=layer, condition_key=None, require_counts=False)
    values = values[data.kept]
    if weights is not None:
        weights = weights[data.kept]
        on_lineage = weights >= min_weight
        if not on_lineage.any():
            raise ExprflowInputError(f"No cell has adata.obs['{weight_key}'] >= min_weight={min_weight}.")
        if not on_lineage.all():
            logger.info("keeping %d of %d cells on the lineage (%s >= %g)", on_lineage.sum(), len(weights),
                        weight_key, min_weight)
            data, values, weights = data.subset(on_lineage), values[on_lineage], weights[on_lineage]
    if n_bins is not None:
        if labels is not None:
            raise ExprflowInputError(f"n_bins needs numeric times; adata.obs['{time_key}'] is categorical.")
        codes = quantile_bins(values, int(n_bins))
        levels = np.array([values[codes == k].mean() for k in range(int(n_bins))])
        names = [f"bin{k}" for k in range(int(n_bins))]
    else:
        levels, codes = np.unique(values, return_inverse=True)
        names = [labels[int(v)] for v in levels] if labels is not None else [f"{v:g}" for v in levels]
    if len(levels) < 2:
        raise ExprflowInputError(
            f"adata.obs['{time_key}'] has a single time point ({names[0]}); a time course needs at least two. "
            "Check the column, or that filtering (lineage weights, empty cells) kept cells at several times."
        )
    return TimeCourse(data=data, time_levels=np.asarray(levels, dtype=np.float64), time_labels=names,
                      time_codes=np.asarray(codes, dtype=np.int64), weights=weights, time_key=time_key,
                      weight_key=weight_key)
