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

import exprflow as ef
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

# 4. Draw the generated trajectories over the real cells (PCA fitted on the real cells); cells off
#    lineage 1 (weight 0) are drawn in grey.
ef.pl.trajectories(paul15, paths, time_key="pseudotime_lineage1", weight_key="weight_lineage1",
                   save=out / "trajectories.png")

model.save(out / "model", overwrite=True)
print("wrote", sorted(p.name for p in out.iterdir()))
