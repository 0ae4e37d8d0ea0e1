"""What ``TrajectoryFlow`` remembers about an AnnData and the AnnData it returns."""

from __future__ import annotations

from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from exprflow.errors import ExprflowInputError
from exprflow.output.anndata import cell_names

#: how ``TrajectoryFlow.predict`` reads a numeric time between grid points
TIME_METHODS = ("auto", "exact", "nearest", "interpolate")


@dataclass(frozen=True)
class TimeCourseSetup:
    """Layer, time column and lineage-weight column of a time course (``condition_key`` is always None,
    so other models that recall the setup of the same AnnData still read it)."""

    layer: str | None = None
    time_key: str | None = None
    weight_key: str | None = None
    condition_key: str | None = None


def trajectory_adata(X: sp.csr_matrix, model, grid_steps: np.ndarray, trajectory: np.ndarray | None,
                     provenance: dict) -> ad.AnnData:
    """Generated cells: values in ``X``; ``obs[time_key]`` (time of the step), ``time_label``,
    ``trajectory`` (when given) and ``source = "generated"``; provenance in ``uns["exprflow"]``."""
    n = X.shape[0]
    obs = pd.DataFrame(index=cell_names(n))
    if trajectory is not None:
        obs["trajectory"] = np.asarray(trajectory, dtype=np.int64)
    obs[model.setup.time_key] = model.time_grid[grid_steps]
    obs["time_label"] = pd.Categorical([model.time_labels[k] for k in grid_steps], categories=model.time_labels,
                                       ordered=True)
    obs["source"] = "generated"
    adata = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=list(model.var_names)))
    adata.uns["exprflow"] = provenance
    return adata


def locate_time(model, time_point: float | str, method: str = "auto") -> tuple[int, int, float]:
    """``(k0, k1, w)``: the grid steps around ``time_point`` and the weight of ``k1`` (``w == 0``: step ``k0``).

    A level label or a time on the grid is that step. A numeric time between two grid points is, with
    ``method="nearest"``, the grid step (time bin) whose time is nearest, and with ``"interpolate"`` the
    two neighbours weighted by distance; ``"auto"`` takes ``"nearest"`` for a model of pseudotime bins
    (``n_bins``) and ``"exact"`` (off-grid times refused) otherwise.
    """
    if method not in TIME_METHODS:
        raise ExprflowInputError(f"method must be one of {TIME_METHODS}, got {method!r}.")
    grid = model.time_grid
    if isinstance(time_point, str) and time_point in model.time_labels:
        k = model.time_labels.index(time_point)
        return k, k, 0.0
    try:
        value = float(time_point)
    except (TypeError, ValueError):
        value = None
    hits = [] if value is None else np.flatnonzero(np.isclose(grid, value, rtol=1e-9, atol=1e-9))
    if len(hits) == 1:
        return int(hits[0]), int(hits[0]), 0.0
    if method == "auto":
        method = "nearest" if getattr(model.config, "n_bins", None) else "exact"
    if value is None or method == "exact" or not grid[0] <= value <= grid[-1]:
        span = "" if value is None else f" (times {grid[0]:g} to {grid[-1]:g})"
        raise ExprflowInputError(
            f"time {time_point!r} is not on the model's time grid {model.time_labels}{span}; give a grid time or "
            "label, a time inside the grid with method='nearest' or 'interpolate', or declare a time point "
            "without cells at training (time_points=[...]).")
    k1 = int(np.searchsorted(grid, value))
    k0 = k1 - 1
    w = float((value - grid[k0]) / (grid[k1] - grid[k0]))
    if method == "nearest":
        k = k1 if w >= 0.5 else k0
        return k, k, 0.0
    return k0, k1, w
