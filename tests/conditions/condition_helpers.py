"""Synthetic data with two condition attributes (a plain module: ``from condition_helpers import ...``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

KEYS = ["cell_type", "donor"]


def make_two_attribute_adata(n_cells: int = 400, seed: int = 0):
    """Synthetic counts: cell type sets the profile, donor d2 multiplies genes 0-4 by 6."""
    from synthetic import make_counts_adata

    adata = make_counts_adata(n_cells=n_cells, n_genes=30, seed=seed)
    rng = np.random.default_rng(seed + 1000)  # independent of the cell types drawn with `seed`
    donor = rng.integers(0, 2, size=n_cells)
    X = adata.X.toarray()
    X[donor == 1, :5] = rng.poisson(X[donor == 1, :5] * 6 + 1)
    adata.X = type(adata.X)(X)
    adata.obs["donor"] = pd.Categorical(np.where(donor == 1, "d2", "d1"))
    return adata
