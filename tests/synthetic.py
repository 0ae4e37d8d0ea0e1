"""Small synthetic count data for tests (importable: ``from synthetic import make_counts_adata``)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp


def make_counts_adata(n_cells: int = 120, n_genes: int = 50, n_types: int = 3, seed: int = 0) -> ad.AnnData:
    """Negative-binomial-like counts with ``n_types`` cell types that differ in mean profile."""
    rng = np.random.default_rng(seed)
    types = rng.integers(0, n_types, size=n_cells)
    base = rng.gamma(0.6, 1.0, size=(n_types, n_genes)) + 0.05
    lib = rng.lognormal(np.log(800), 0.3, size=n_cells)
    mu = base[types] / base[types].sum(1, keepdims=True) * lib[:, None]
    counts = rng.poisson(rng.gamma(2.0, mu / 2.0))
    adata = ad.AnnData(
        X=sp.csr_matrix(counts.astype(np.float32)),
        obs=pd.DataFrame(
            {"cell_type": pd.Categorical([f"type{k}" for k in types])},
            index=[f"cell{i}" for i in range(n_cells)],
        ),
        var=pd.DataFrame(index=[f"gene{j}" for j in range(n_genes)]),
    )
    return adata


def make_perturbation_arms(n_types: int = 2, seed: int = 2) -> tuple[ad.AnnData, ad.AnnData]:
    """``(both arms, control cells)``: 60 control cells per type x 15 genes, and a 'stim' copy whose genes
    0-2 are multiplied by ``2 + type index``; ``obs["condition"]`` is ``ctrl`` / ``stim``."""
    adata = make_counts_adata(n_cells=60 * n_types, n_genes=15, n_types=n_types, seed=seed)
    stim = adata.copy()
    dense = stim.X.toarray()
    factor = 2.0 + np.array([int(str(t)[-1]) for t in stim.obs["cell_type"]], dtype=float)
    dense[:, :3] *= factor[:, None]
    stim.X = sp.csr_matrix(dense)
    adata.obs["condition"], stim.obs["condition"] = "ctrl", "stim"
    stim.obs_names = [f"s{i}" for i in range(stim.n_obs)]
    both = ad.concat([adata, stim])
    both.obs["condition"] = pd.Categorical(both.obs["condition"])
    return both, adata
