"""Flows in gene space (``StateFlow``): a cell as a state vector, and genes as a set.

``StateFlow`` generates the whole state vector of a cell (``log1p`` of normalised counts, standardised
per gene) with a rectified flow, then turns it back into integer counts. Its backbone decides how the
genes are read:

- ``"mlp"``: one vector, a residual MLP (the default);
- ``"s4d"`` / ``"hyena"`` / ``"mamba"`` / ``"transformer"``: the genes in a fixed order as a sequence
  of gene patches;
- ``"deepsets"`` / ``"set_transformer"``: the genes as an unordered set of (gene embedding x value)
  entities keyed by gene name, so the model also embeds cells measured on another gene panel.

Budgets are tiny so that the script runs in well under a minute; see the models' ``train`` defaults
for real runs.
"""

import anndata as ad
import numpy as np
from sklearn.model_selection import train_test_split

from exprflow import StateFlow, evaluate
from exprflow.datasets import bundled_path

adata = ad.read_h5ad(bundled_path("pbmc3k"))
train_names, test_names = train_test_split(
    adata.obs_names, test_size=0.2, stratify=adata.obs["cell_type"], random_state=0
)
train, test = adata[train_names].copy(), adata[test_names].copy()

# 1. The state vector with the MLP backbone, conditioned on cell type.
model = StateFlow(train, condition_key="cell_type", backbone="mlp",
                  backbone_kwargs={"hidden": 128, "depth": 2})
model.train(max_steps=200, batch_size=256, progress_bar=False)
request = test.obs["cell_type"].value_counts()
generated = model.generate(conditions=request[request > 0].to_dict(), seed=0)
result = evaluate(test, generated, train, condition_key="cell_type", seed=0)
for name in ("energy", "w2", "coverage"):
    print(f"{name}: {result['ratio_to_floor'][name]:.2f}x floor")
print(f"c2st_knn: {result['metrics']['c2st_knn']:.3f} (floor {result['floor']['c2st_knn']:.3f})")

# 2. Genes as a set: DeepSets over (gene embedding x value), no gene order, no positions.
genes_as_set = StateFlow(train, condition_key="cell_type", backbone="deepsets",
                         backbone_kwargs={"hidden": 32, "depth": 1})
genes_as_set.train(max_steps=20, batch_size=64, progress_bar=False)

# The pooled embedding of a cell reads genes by NAME: a panel with only some of the genes, in another
# order, plus a gene the model never saw, still embeds (the unknown gene is dropped and logged).
rng = np.random.default_rng(0)
panel = test[:, rng.permutation(test.var_names)[:500]].copy()
panel.var_names = [*panel.var_names[:-1], "NOT_A_GENE"]
embedding = genes_as_set.get_cell_embedding(panel, on_unknown="drop")
print("cell embedding:", embedding.shape)
assert embedding.shape == (test.n_obs, 32) and np.isfinite(embedding).all()
