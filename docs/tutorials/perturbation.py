"""Perturbation response (``PerturbationFlow``): predict interferon-beta stimulated cells of an unseen cell type.

Kang et al. (2018) stimulated PBMCs with interferon-beta. ``PerturbationFlow`` learns, in the latent
space of a count VAE, a rectified flow that carries a control cell's state to its perturbed state
(control and perturbed cells are paired by optimal transport within cell type). The protocol of scGen:
the stimulated cells of one cell type are held out; the model sees that type's control cells only and
must predict their response.

Data: ``kang2018_ifnb_small_labeled.h5ad`` (raw counts; ``condition`` ctrl/stim and ``cell_type`` in
``obs``). Set ``EXPRFLOW_DATA`` to the folder that holds it.

Budgets are tiny so that the script runs in well under a minute; the defaults train much longer.
"""

import os
from pathlib import Path

import anndata as ad

from exprflow import PerturbationFlow
from exprflow.metrics.perturbation import perturbation_metrics

data_dir = Path(os.environ.get("EXPRFLOW_DATA", "data"))
kang = ad.read_h5ad(data_dir / "kang2018_ifnb_small_labeled.h5ad")

held_out = "B cells"
is_held_out = (kang.obs["cell_type"] == held_out) & (kang.obs["condition"] == "stim")
train = kang[~is_held_out].copy()
ctrl = kang[(kang.obs["cell_type"] == held_out) & (kang.obs["condition"] == "ctrl")].copy()
stim = kang[is_held_out].copy()

# 1. Train: the count VAE on all training cells, then the flow on OT-paired (control, stimulated) states.
model = PerturbationFlow(train, condition_key="condition", control_group="ctrl", cell_type_key="cell_type")
model.train(max_steps=300, flow_steps=300, progress_bar=False)

# 2. Predict: each control B cell -> its stimulated counts (an AnnData with ctrl's obs, condition="stim").
pred = model.predict(ctrl, condition="stim", seed=0)
print(pred)

# 3. Score against the real stimulated B cells (scGen's R^2 of per-gene means, on all genes and on the
#    100 most up-regulated genes), beside the identity baseline (the control cells as the prediction).
flow = perturbation_metrics(pred.X, stim.X, ctrl.X)
identity = perturbation_metrics(ctrl.X, stim.X, ctrl.X)
for name in ("r2_mean_all", "r2_mean_top100", "lfc_pearson_all"):
    base = identity[name]  # None: undefined (the identity's predicted fold change is 0 everywhere)
    print(f"{name:>16}: flow {flow[name]:.3f}   identity {'undefined' if base is None else f'{base:.3f}'}")
