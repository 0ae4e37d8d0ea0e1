"""CellFlow (``cellflow-tools``, Klein et al. 2025) as an anchor on the held-out cell type split.

Two steps, two interpreters (CellFlow's JAX stack lives in its own venv outside the repository)::

    python -m venv /work/venv-cellflow && /work/venv-cellflow/bin/pip install cellflow-tools
    OMP_NUM_THREADS=1 /work/venv-cellflow/bin/python benchmarks/cellflow_anchor.py predict --seeds 0 --dir /tmp/cellflow
    OMP_NUM_THREADS=1 python benchmarks/cellflow_anchor.py score --dir /tmp/cellflow \\
        --out benchmarks/results/perturbation_field_cellflow.json

``predict``: for each held-out type of kang2018_ifnb_small_labeled (training cells as in
``perturbation_field.py``): log1p-normalised expression (10,000 per cell), a 50-component PCA fitted on the
training cells (CellFlow's usual sample representation), CellFlow's OT flow matching ("otfm") conditioned on
``is_stim`` (the perturbation) and the cell type as a sample covariate whose embedding is the type's mean
control PCA vector (so a held-out type has one), control cells split by cell type (CellFlow refuses a
control population without perturbed cells, so the held-out type's control cells enter only the PCA and
its embedding); a small network for
this CPU (hidden 256 x 2, 2,000 iterations, batch 256); the held-out control cells are moved and decoded
back with the PCA. ``score``: the predicted log1p values go to counts with each control cell's library
size (as the gene-space baselines) and are scored with ``field_metrics``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kang2018_ifnb_small_labeled.h5ad"
TYPES = ["B cells", "CD14+ Monocytes", "CD4 T cells", "CD8 T cells", "FCGR3A+ Monocytes"]


def _log1p(x) -> np.ndarray:
    x = np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)
    return np.log1p(x / x.sum(1, keepdims=True) * 1e4)


def predict(out: Path, seeds: list[int], types: list[str], iterations: int) -> None:
    import anndata as ad
    import optax
    import pandas as pd
    from cellflow.model import CellFlow
    from sklearn.decomposition import PCA

    out.mkdir(parents=True, exist_ok=True)
    adata = ad.read_h5ad(DATA)
    for seed in seeds:
        for t in types:
            start = time.process_time()
            is_t, is_c = (adata.obs["cell_type"] == t).to_numpy(), (adata.obs["condition"] == "ctrl").to_numpy()
            train = adata[~(is_t & ~is_c)].copy()
            y = _log1p(train.X)
            pca = PCA(50, random_state=seed).fit(y)
            train.obsm["X_pca"] = pca.transform(y).astype(np.float32)
            train.obs["is_ctrl"] = (train.obs["condition"] == "ctrl").to_numpy()
            train.obs["is_stim"] = ~train.obs["is_ctrl"]
            train.obs["cell_type"] = train.obs["cell_type"].astype(str).astype("category")
            train.uns["cell_type_emb"] = {
                c: train.obsm["X_pca"][(train.obs["cell_type"] == c).to_numpy() & train.obs["is_ctrl"].to_numpy()].mean(0)
                for c in train.obs["cell_type"].cat.categories}
            held = (train.obs["cell_type"] == t).to_numpy()  # its control cells: no stim partner, CellFlow refuses them
            fit = train[~held].copy()
            fit.obs["cell_type"] = fit.obs["cell_type"].cat.remove_unused_categories()
            cf = CellFlow(fit, solver="otfm")
            cf.prepare_data(sample_rep="X_pca", control_key="is_ctrl", perturbation_covariates={"stim": ["is_stim"]},
                            sample_covariates=["cell_type"], sample_covariate_reps={"cell_type": "cell_type_emb"},
                            split_covariates=["cell_type"])
            cf.prepare_model(condition_embedding_dim=32, time_encoder_dims=(128,), hidden_dims=(256, 256),
                             decoder_dims=(256, 256), cond_output_dropout=0.1, optimizer=optax.adam(1e-3), seed=seed)
            cf.train(num_iterations=iterations, batch_size=256, valid_freq=iterations + 1)
            ctrl = train[held].copy()
            cov = pd.DataFrame({"is_stim": [True], "is_ctrl": [False], "cell_type": [t]})
            pred = cf.predict(ctrl, covariate_data=cov, sample_rep="X_pca")
            z = np.asarray(next(iter(pred.values())))
            np.save(out / f"pred_{t.replace(' ', '_')}_{seed}.npy", pca.inverse_transform(z).astype(np.float32))
            (out / f"cost_{t.replace(' ', '_')}_{seed}.json").write_text(json.dumps({"cpu_s": time.process_time() - start}))
            print(t, seed, f"{time.process_time() - start:.0f} CPU s", flush=True)


def score(out: Path, result: Path) -> None:
    import anndata as ad

    from exprflow.metrics.perturbation import field_metrics
    from exprflow.models.perturbation_baselines import normalised_to_counts

    adata = ad.read_h5ad(DATA)
    runs = []
    for f in sorted(out.glob("pred_*.npy")):
        name, seed = f.stem[5:].rsplit("_", 1)
        t = name.replace("_", " ")
        is_t, is_c = (adata.obs["cell_type"] == t).to_numpy(), (adata.obs["condition"] == "ctrl").to_numpy()
        ctrl, stim = adata[is_t & is_c], adata[is_t & ~is_c]
        counts = normalised_to_counts(np.load(f), np.asarray(ctrl.X.sum(1)).ravel(), seed=int(seed))
        m = field_metrics(counts, stim.X, ctrl.X)
        m.pop("effect")
        cost = json.loads((out / f"cost_{name}_{seed}.json").read_text())
        runs.append({"cell_type": t, "seed": int(seed), "metrics": {"cellflow": m}, **cost})
    result.write_text(json.dumps({"name": "cellflow_anchor", "runs": runs}, indent=2))
    for r in runs:
        m = r["metrics"]["cellflow"]
        print(r["cell_type"], r["seed"], {k: round(v, 3) for k, v in m.items() if isinstance(v, float)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["predict", "score"])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--types", nargs="+", default=TYPES)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--out", type=Path)
    a = parser.parse_args()
    if a.mode == "predict":
        predict(a.dir, a.seeds, a.types, a.iterations)
    else:
        score(a.dir, a.out)


if __name__ == "__main__":
    main()
