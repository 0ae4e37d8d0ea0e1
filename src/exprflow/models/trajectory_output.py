"""What ``TrajectoryFlow`` remembers about an AnnData and the AnnData it returns."""

from __future__ import annotations

from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp


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
    obs = pd.DataFrame(index=[f"gen_{i}" for i in range(n)])
    if trajectory is not None:
        obs["trajectory"] = np.asarray(trajectory, dtype=np.int64)
    obs[model.setup.time_key] = model.time_grid[grid_steps]
    obs["time_label"] = pd.Categorical([model.time_labels[k] for k in grid_steps], categories=model.time_labels,
                                       ordered=True)
    obs["source"] = "generated"
    adata = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=list(model.var_names)))
    adata.uns["exprflow"] = provenance
    return adata
