"""Synthetic data for the metrics tests (a module of this folder: ``conftest`` names clash across folders)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp


def make_counts(n_cells: int = 120, n_genes: int = 50, n_types: int = 3, seed: int = 0) -> ad.AnnData:
    """Gamma-Poisson counts (CSR) with ``n_types`` cell types of different mean profiles in obs['cell_type']."""
    rng = np.random.default_rng(seed)
    types = rng.integers(0, n_types, size=n_cells)
    base = rng.gamma(0.6, 1.0, size=(n_types, n_genes)) + 0.05
    lib = rng.lognormal(np.log(800), 0.3, size=n_cells)
    mu = base[types] / base[types].sum(1, keepdims=True) * lib[:, None]
    counts = rng.poisson(rng.gamma(2.0, mu / 2.0))
    return ad.AnnData(
        X=sp.csr_matrix(counts.astype(np.float32)),
        obs=pd.DataFrame({"cell_type": pd.Categorical([f"type{k}" for k in types])},
                         index=[f"cell{i}" for i in range(n_cells)]),
        var=pd.DataFrame(index=[f"gene{j}" for j in range(n_genes)]),
    )
