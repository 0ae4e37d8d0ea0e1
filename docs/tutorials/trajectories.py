"""Time courses as sequences (``TrajectoryFlow``) on the paul15 myeloid differentiation data.

Single cells are snapshots: no cell is measured twice. ``TrajectoryFlow`` bins a pseudotime into ordered
time points, couples the cells of consecutive points by optimal transport in a count-VAE latent space,
chains the couplings into trajectories and trains a rectified flow whose sample is a whole trajectory,
with a state-space model (S4D) over the time axis.

Data: ``paul15_pseudotime.h5ad`` (raw counts; slingshot's ``pseudotime_lineage1`` and
``weight_lineage1`` in ``obs``). Set ``EXPRFLOW_DATA`` to the folder that holds it.

Budgets are tiny so that the script runs in well under a minute.
"""

import os
from pathlib import Path

import anndata as ad
import matplotlib

matplotlib.use("Agg")  # write figures to files; remove in a notebook
import matplotlib.pyplot as plt
import numpy as np
import scanpy as sc

from exprflow import TrajectoryFlow

data_dir = Path(os.environ.get("EXPRFLOW_DATA", "data"))
out = Path("tutorial_trajectories")
out.mkdir(exist_ok=True)

paul15 = ad.read_h5ad(data_dir / "paul15_pseudotime.h5ad")

# 1. The time axis: pseudotime of lineage 1 cut into 6 ordered bins of equal cell counts; cells whose
#    lineage weight is below 0.5 are not on the lineage and are left out.
TrajectoryFlow.setup_anndata(paul15, time_key="pseudotime_lineage1", weight_key="weight_lineage1")
model = TrajectoryFlow(paul15, n_bins=6, backbone="s4d", backbone_kwargs={"width": 32, "depth": 2},
                       n_sequences=512)
model.train(max_steps=300, vae_steps=300, batch_size=64, progress_bar=False)

# 2. Cells at one time point, the other time points given as context: integer counts.
cells = model.predict("bin3", n_cells=200, seed=0)
print(cells)

# 3. Whole trajectories: one cell per time point; obs["trajectory"], the time, obs["observed"].
#    Each step is a sampled cell (integer counts), so a drawn path also shows counting noise.
paths = model.generate_trajectories(30, seed=0)
print(paths.obs.head(8))

# 4. Draw the generated trajectories over the real cells (PCA fitted on the real cells).
real = paul15[paul15.obs["weight_lineage1"] >= 0.5].copy()
sc.pp.normalize_total(real, target_sum=1e4)
sc.pp.log1p(real)
sc.pp.pca(real, n_comps=2)
gen = paths.copy()
sc.pp.normalize_total(gen, target_sum=1e4)
sc.pp.log1p(gen)
pcs = real.varm["PCs"]
mean = np.asarray(real.X.mean(axis=0)).ravel()
z_real = real.obsm["X_pca"]
z_gen = (np.asarray(gen.X.toarray() if hasattr(gen.X, "toarray") else gen.X) - mean) @ pcs
fig, ax = plt.subplots(figsize=(6, 5))
points = ax.scatter(z_real[:, 0], z_real[:, 1], c=real.obs["pseudotime_lineage1"], s=5, cmap="viridis")
for i in range(paths.obs["trajectory"].nunique()):
    rows = np.flatnonzero(paths.obs["trajectory"].to_numpy() == i)
    ax.plot(z_gen[rows, 0], z_gen[rows, 1], color="0.2", lw=0.7, alpha=0.7)
fig.colorbar(points, label="pseudotime (lineage 1)")
ax.set(xlabel="PC1", ylabel="PC2", title="30 generated trajectories over the real cells")
fig.savefig(out / "trajectories.png", dpi=100, bbox_inches="tight")
plt.close(fig)

model.save(out / "model", overwrite=True)
print("wrote", sorted(p.name for p in out.iterdir()))
