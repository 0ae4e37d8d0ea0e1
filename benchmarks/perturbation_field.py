"""Perturbation prediction at the field's standard: the hard baselines and PerturbationFlow, cell-eval metrics.

Usage (the commands behind the "Perturbation prediction at the field's standard" section of BENCHMARKS.md)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/perturbation_field.py run --seeds 0 1 2 \\
        --out benchmarks/results/perturbation_field_kang_small.json
    python benchmarks/perturbation_field.py table benchmarks/results/perturbation_field_kang_small.json \\
        --figure benchmarks/figures/perturbation_field_lfc.png

kang2018_ifnb_small_labeled (1,556 cells x 1,267 genes), the protocol of ``benchmarks/perturbation.py``: each
of the 5 cell types is held out in turn; training sees that type's CONTROL cells only plus both arms of the
other types; every row predicts the held-out type's stimulated cells from its control cells and is scored
against its real stimulated cells. Rows: the baselines of ``exprflow.models.perturbation_baselines``
(``no_change``, ``train_mean``, ``mean_shift``, ``ridge``, ``latent_arithmetic`` in the flow's VAE state) and
PerturbationFlow (MLP) with its sampled decoder (``pflow``) and with the residual decode (``pflow_residual``,
the same trained model). Metrics: ``exprflow.metrics.perturbation.field_metrics`` (cell-eval's definitions),
the discrimination score of the predicted response among the 5 types' real responses (each type's stim mean
minus its own control mean), and the protocol's energy distance to real stimulated cells as a ratio to its
floor. Jobs run one after another in this process (1 torch thread); the result file is written after each
job and finished jobs are skipped when it is run again.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
from bench_common import SHARED, cpu_seconds, mean_sd

TYPES = ["B cells", "CD14+ Monocytes", "CD4 T cells", "CD8 T cells", "FCGR3A+ Monocytes"]
GENE_ROWS = ["no_change", "train_mean", "mean_shift", "ridge"]
ROWS = GENE_ROWS + ["latent_arithmetic", "pflow", "pflow_residual"]
METRICS = ["pearson_delta_all", "pearson_delta_top100", "r2_mean_top100", "de_overlap_at_100", "de_overlap_at_N",
           "de_direction_agreement", "discrimination_score", "mae", "energy_ratio"]
KEYS = dict(condition_key="condition", control_group="ctrl", cell_type_key="cell_type")


def _predict(train, ctrl, seed: int, budget: dict) -> tuple[dict, dict]:
    """Predicted counts of ``ctrl``'s stimulated state per row; training CPU seconds per row."""
    from exprflow.models import PerturbationFlow
    from exprflow.models.perturbation_baselines import BASELINES

    preds, cost = {}, {}
    for row in GENE_ROWS:
        c = cpu_seconds()
        preds[row] = BASELINES.get(row)().fit(train, **KEYS).predict(ctrl, "stim", seed=seed)
        cost[row] = cpu_seconds() - c
    c = cpu_seconds()
    model = PerturbationFlow(train, **KEYS, backbone="mlp")
    model.train(max_steps=budget["vae_steps"], flow_steps=budget["flow_steps"], seed=seed, progress_bar=False)
    cost["vae+flow"] = cpu_seconds() - c
    preds["latent_arithmetic"] = BASELINES.get("latent_arithmetic").from_model(model).predict(ctrl, "stim", seed=seed)
    preds["pflow"] = model.predict(ctrl, "stim", seed=seed).X
    preds["pflow_residual"] = model.predict(ctrl, "stim", seed=seed, decode="residual").X
    return preds, cost


def run_job(adata, cell_type: str, seed: int, budget: dict, keep_effects: bool) -> dict:
    from exprflow.metrics import ReferenceSpace
    from exprflow.metrics.perturbation import discrimination_score, energy_to_floor, field_metrics, mean_expression

    is_type = (adata.obs["cell_type"] == cell_type).to_numpy()
    is_ctrl = (adata.obs["condition"] == "ctrl").to_numpy()
    train, ctrl, stim = adata[~(is_type & ~is_ctrl)].copy(), adata[is_type & is_ctrl].copy(), adata[is_type & ~is_ctrl]
    real_effects = np.array([mean_expression(adata.X[~is_ctrl & (adata.obs["cell_type"] == t).to_numpy()])
                             - mean_expression(adata.X[is_ctrl & (adata.obs["cell_type"] == t).to_numpy()]) for t in TYPES])
    k = TYPES.index(cell_type)
    preds, cost = _predict(train, ctrl, seed, budget)
    space = ReferenceSpace().fit(train.X)
    metrics, effects = {}, {}
    for row, pred in preds.items():
        m = field_metrics(pred, stim.X, ctrl.X)
        pred_effects = real_effects.copy()
        pred_effects[k] = m.pop("effect")
        m["discrimination_score"] = float(discrimination_score(pred_effects, real_effects)[k])
        m["energy_ratio"] = energy_to_floor(pred, stim.X, space, seed=seed)["energy_ratio"]
        metrics[row] = m
        if keep_effects:
            effects[row] = np.round(pred_effects[k], 4).tolist()
    out = {"cell_type": cell_type, "seed": seed, "cost_cpu_s": cost, "metrics": metrics}
    if keep_effects:
        from exprflow.metrics.perturbation import de_genes

        effects["real"] = np.round(real_effects[k], 4).tolist()
        out["effects"], out["de_top100"] = effects, de_genes(stim.X, ctrl.X, 100).tolist()
    return out


def run(seeds: list[int], types: list[str], budget: dict, out: Path) -> None:
    import anndata as ad
    import torch

    from exprflow.io import write_text_atomic

    torch.set_num_threads(1)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    result = json.loads(out.read_text()) if out.exists() else {"name": "kang_small_field", "budget": budget,
                                                               "torch_threads": 1, "runs": []}
    done = {(r["cell_type"], r["seed"]) for r in result["runs"]}
    adata = ad.read_h5ad(SHARED / "kang2018_ifnb_small_labeled.h5ad")
    for seed in seeds:
        for t in types:
            if (t, seed) in done:
                continue
            w, c = time.perf_counter(), cpu_seconds()
            job = run_job(adata, t, seed, budget, keep_effects=seed == 0)
            job["wall_s"], job["cpu_s"] = time.perf_counter() - w, cpu_seconds() - c
            result["runs"].append(job)
            write_text_atomic(json.dumps(result), out)
            logging.warning("%s seed %d: %.0f wall s, %.0f CPU s; pflow_residual pearson_delta_top100 %.3f", t, seed,
                            job["wall_s"], job["cpu_s"], job["metrics"]["pflow_residual"]["pearson_delta_top100"])


def table(result: dict) -> str:
    """Markdown: mean ± sd over seeds of the average over held-out types; per-type tables."""
    runs, seeds = result["runs"], sorted({r["seed"] for r in result["runs"]})

    def per_seed(row, metric):
        vals = []
        for s in seeds:
            v = [r["metrics"][row][metric] for r in runs if r["seed"] == s]
            v = [x for x in v if x is not None]
            vals.append(float(np.mean(v)) if v else None)
        return vals

    lines = [f"seeds {seeds}, {len(runs)} (type, seed) jobs, torch threads 1", "",
             "| row | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    lines += [f"| {row} | " + " | ".join(mean_sd(per_seed(row, m)) for m in METRICS) + " |" for row in ROWS]
    for metric in ("pearson_delta_top100", "r2_mean_top100", "de_overlap_at_100"):
        lines += ["", f"{metric} per held-out cell type, mean ± sd over seeds:", "",
                  "| row | " + " | ".join(TYPES) + " |", "|---|" + "---|" * len(TYPES)]
        for row in ROWS:
            cells = [mean_sd(r["metrics"][row][metric] for r in runs if r["cell_type"] == t) for t in TYPES]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
    gene_cpu = {row: np.mean([r["cost_cpu_s"][row] for r in runs]) for row in GENE_ROWS}
    lines += ["", "fit CPU seconds per job, mean: " + ", ".join(f"{k} {v:.2f}" for k, v in gene_cpu.items())
              + f", VAE + flow {np.mean([r['cost_cpu_s']['vae+flow'] for r in runs]):.1f} (latent_arithmetic and both "
              f"pflow rows use that one model); all jobs: {sum(r['cpu_s'] for r in runs):.0f} CPU s, "
              f"{sum(r['wall_s'] for r in runs):.0f} wall s"]
    return "\n".join(lines)


def figure(result: dict, path: Path) -> None:
    """Predicted vs real log-fold-change (mean log1p stim - ctrl) of the top-100 DE genes, seed 0, all 5 types
    pooled (the types' vectors are concatenated)."""
    from exprflow.plotting import fold_change_panels

    runs = [r for r in result["runs"] if "effects" in r]
    offsets = np.cumsum([0] + [len(r["effects"]["real"]) for r in runs])
    genes = np.concatenate([np.asarray(r["de_top100"]) + o for r, o in zip(runs, offsets)])
    groups = np.concatenate([[r["cell_type"]] * len(r["de_top100"]) for r in runs])
    path.parent.mkdir(parents=True, exist_ok=True)
    fold_change_panels(np.concatenate([r["effects"]["real"] for r in runs]),
                       {row: np.concatenate([r["effects"][row] for r in runs]) for row in ROWS}, genes=genes,
                       groups=groups, save=path,
                       title="kang2018_ifnb_small_labeled, held-out cell type, top-100 DE genes (seed 0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["run", "table"])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--types", nargs="+", default=TYPES)
    parser.add_argument("--vae-steps", type=int, default=600)
    parser.add_argument("--flow-steps", type=int, default=400)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--figure", type=Path)
    a = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    if a.mode == "run":
        run(a.seeds, a.types, {"vae_steps": a.vae_steps, "flow_steps": a.flow_steps}, a.out)
        print(table(json.loads(a.out.read_text())))
        return
    results = [json.loads(f.read_text()) for f in a.files]
    results[0]["runs"] = [r for res in results for r in res["runs"]]
    print(table(results[0]))
    if a.figure is not None:
        figure(results[0], a.figure)


if __name__ == "__main__":
    main()
