"""Perturbation-response benchmark (issue 6): PerturbationFlow vs identity, mean shift, latent arithmetic.

Usage (datasets ``kang_small`` and ``kang_full``; a harness row is a held-out cell type of ``kang_small``
or ``all`` of ``kang_full``; the option ``methods`` names the rows of the tables below)::

    nice -n 10 python -m benchmarks perturbation --dataset kang_small --seeds 0 1 2 --jobs 2
    nice -n 10 python -m benchmarks perturbation --dataset kang_full --seeds 0 --set cells=4000
    python -m benchmarks perturbation --table benchmarks/results/perturbation_kang_small*.json   # older results

``small`` (kang2018_ifnb_small_labeled, 1,556 cells x 1,267 genes): each of the 5 cell types is held out in
turn; training sees that type's CONTROL cells only plus both arms of the other types; every row predicts
the held-out type's stimulated cells from its control cells and is scored against its real stimulated
cells (metrics.perturbation: R^2 of per-gene means on all genes and on the top-100 DE genes, LFC Pearson,
energy ratio to floor). One child process per (cell type, seed); the VAE is trained once per child and
shared by every flow row (``pretrained_vae``), so flow rows differ only in the flow network.

``full`` (kang2018_ifnb, 14,053 genes; subsampled, see the option ``cells``): no cell type can be held out (stimulated
cells have no labels). Cells are split 80/20 within condition; models train on the train split (both
arms) and predict the test control cells' stimulated state, scored against the real test stimulated
cells, all cells together and per control-labelled type (stimulated test cells get a type from a
logistic regression trained on labelled control train cells in a 30-PC space of log1p-normalised
expression WITHOUT the 500 genes most changed by stimulation, so the classifier does not see the response).

Rows: ``identity``, ``mean_shift``, ``latent_arithmetic`` (scGen-style, in PerturbationFlow's VAE state),
``cond_flow`` (Markov flow v(x_t) from control to stim, no source step), ``pflow_mlp`` (PerturbationFlow,
2-step sequence through the MLP), ``pflow_s4d`` and ``pflow_transformer`` (the 2-step sequence through
S4D / self-attention). Every child uses 1 torch thread.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np

from bench_common import cpu_seconds, load, mean_sd
from harness import Benchmark, script_main

SMALL_ROWS = ["identity", "mean_shift", "latent_arithmetic", "cond_flow", "pflow_mlp", "pflow_s4d", "pflow_transformer"]
FULL_ROWS = ["identity", "mean_shift", "latent_arithmetic", "pflow_mlp"]
FLOWS = {  # row -> PerturbationFlow options besides the VAE
    "cond_flow": {"backbone": "mlp", "source_token": False},
    "pflow_mlp": {"backbone": "mlp"},
    "pflow_s4d": {"backbone": "s4d"},
    "pflow_transformer": {"backbone": "transformer"},
}
METRICS = ["r2_mean_all", "r2_mean_top100", "lfc_pearson_all", "lfc_pearson_top100", "energy_ratio"]
TYPES = ["B cells", "CD14+ Monocytes", "CD4 T cells", "CD8 T cells", "FCGR3A+ Monocytes"]


def _predict_rows(rows, train, ctrl, cell_type_key, seed, budget) -> tuple[dict, dict]:
    """Predicted counts of ``ctrl``'s stimulated state per row, and training wall/CPU seconds per row."""
    from exprflow.models import PerturbationFlow
    from exprflow.models.perturbation_baselines import LatentArithmetic, MeanShift, identity_prediction

    preds, cost, base = {}, {}, None

    def timed(row, fn):
        w, c = time.perf_counter(), cpu_seconds()
        out = fn()
        cost[row] = {"wall_s": time.perf_counter() - w, "cpu_s": cpu_seconds() - c}
        return out

    common = dict(condition_key="condition", control_group="ctrl", cell_type_key=cell_type_key)
    for row in rows:
        if row == "identity":
            preds[row] = timed(row, lambda: identity_prediction(ctrl))
        elif row == "mean_shift":
            preds[row] = timed(row, lambda: MeanShift().fit(train, **common).predict(ctrl, "stim", seed=seed))
        elif row == "latent_arithmetic" or row in FLOWS:
            if base is None:  # the VAE (+ the pflow_mlp flow) once; other flows reuse the VAE
                base = PerturbationFlow(train, **common, backbone="mlp")
                timed("vae+pflow_mlp", lambda: base.train(max_steps=budget["vae_steps"], flow_steps=budget["flow_steps"],
                                                          seed=seed, progress_bar=False))
                cost["vae"] = {"wall_s": base.vae_seconds}
            if row == "latent_arithmetic":
                preds[row] = timed(row, lambda: LatentArithmetic().fit(base).predict(ctrl, "stim", seed=seed))
            elif row == "pflow_mlp":
                preds[row] = base.predict(ctrl, "stim", seed=seed).X
            else:
                model = PerturbationFlow(train, **common, **FLOWS[row])
                timed(row, lambda m=model: m.train(flow_steps=budget["flow_steps"], seed=seed, progress_bar=False,
                                                   pretrained_vae=base))
                preds[row] = model.predict(ctrl, "stim", seed=seed).X
                cost[row]["n_params"] = sum(p.numel() for p in model.backbone.parameters())
    if base is not None:
        cost.setdefault("pflow_mlp", {})["n_params"] = sum(p.numel() for p in base.backbone.parameters())
    return preds, cost


def _score(preds, stim, ctrl, train_x, seed) -> dict:
    from exprflow.metrics import ReferenceSpace
    from exprflow.metrics.perturbation import perturbation_metrics

    out, space = {}, ReferenceSpace().fit(train_x) if not hasattr(train_x, "transform") else train_x
    for row, pred in preds.items():
        m = perturbation_metrics(pred, stim, ctrl, train=space, seed=seed)
        out[row] = {k: v for k, v in m.items() if k != "de_genes"}
    return out


def small_worker(cell_type: str, seed: int, budget: dict, rows: list[str], smoke: bool = False) -> dict:
    adata = load("kang2018_ifnb_small_labeled", smoke)
    is_type = (adata.obs["cell_type"] == cell_type).to_numpy()
    is_ctrl = (adata.obs["condition"] == "ctrl").to_numpy()
    train, ctrl, stim = adata[~(is_type & ~is_ctrl)].copy(), adata[is_type & is_ctrl].copy(), adata[is_type & ~is_ctrl]
    preds, cost = _predict_rows(rows, train, ctrl, "cell_type", seed, budget)
    return {"cell_type": cell_type, "seed": seed, "cost": cost, "metrics": _score(preds, stim.X, ctrl.X, train.X, seed)}


def _stim_types(train, test_stim, seed: int) -> np.ndarray:
    """Cell types of stimulated cells: logistic regression on labelled control train cells, 30 PCs of
    log1p-normalised expression without the 500 genes most changed by stimulation (module docstring)."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression

    from exprflow.metrics.perturbation import wilcoxon_z
    from exprflow.metrics.reference import normalise_rows

    is_ctrl = (train.obs["condition"] == "ctrl").to_numpy()
    response = np.argsort(-np.abs(wilcoxon_z(train.X[~is_ctrl], train.X[is_ctrl])))[:500]
    keep = np.setdiff1d(np.arange(train.n_vars), response)
    labelled = is_ctrl & train.obs["cell_type_kang2018"].notna().to_numpy()
    x_fit = normalise_rows(train.X[labelled])[:, keep].toarray()
    pca = PCA(30, random_state=seed).fit(x_fit)
    clf = LogisticRegression(max_iter=2000).fit(pca.transform(x_fit), train.obs["cell_type_kang2018"][labelled].astype(str))
    return clf.predict(pca.transform(normalise_rows(test_stim.X)[:, keep].toarray()))


def full_worker(seed: int, budget: dict, rows: list[str], n_cells: int, smoke: bool = False) -> dict:
    adata = load("kang2018_ifnb", smoke)
    rng = np.random.default_rng(0)  # the same cells and split for every seed
    cells = np.sort(rng.choice(adata.n_obs, size=min(n_cells, adata.n_obs), replace=False))
    adata = adata[cells].copy()
    is_test = np.zeros(adata.n_obs, dtype=bool)
    for level in ("ctrl", "stim"):
        rows_l = np.flatnonzero((adata.obs["condition"] == level).to_numpy())
        is_test[rng.choice(rows_l, size=len(rows_l) // 5, replace=False)] = True
    train, test = adata[~is_test].copy(), adata[is_test]
    ctrl = test[(test.obs["condition"] == "ctrl").to_numpy()].copy()
    ctrl = ctrl[ctrl.X.sum(axis=1).A1 > 0].copy()
    stim = test[(test.obs["condition"] == "stim").to_numpy()]
    preds, cost = _predict_rows(rows, train, ctrl, None, seed, budget)
    from exprflow.metrics import ReferenceSpace

    space = ReferenceSpace().fit(train.X)
    result = {"seed": seed, "n_cells": int(adata.n_obs), "n_train": int(train.n_obs), "n_test_ctrl": int(ctrl.n_obs),
              "n_test_stim": int(stim.n_obs), "cost": cost, "metrics": _score(preds, stim.X, ctrl.X, space, seed)}
    stim_types = _stim_types(train, stim, seed)
    ctrl_types = ctrl.obs["cell_type_kang2018"].astype(str).to_numpy()
    per_type = {}
    for t in sorted(set(ctrl_types) - {"nan"}):
        c_rows, s_rows = np.flatnonzero(ctrl_types == t), np.flatnonzero(stim_types == t)
        if min(len(c_rows), len(s_rows)) < 20:
            continue
        per_type[t] = {"n_ctrl": int(len(c_rows)), "n_stim_assigned": int(len(s_rows)), **_score(
            {r: p[c_rows] for r, p in preds.items()}, stim.X[s_rows], ctrl.X[c_rows], space, seed)}
    result["per_type"] = per_type
    return result


def table(result: dict) -> str:
    """Markdown: mean ± sd over seeds of the average over held-out types (small) or of all cells (full)."""
    runs = result["runs"]
    name = result.get("name") or result["dataset"]
    rows = [r for r in SMALL_ROWS if r in runs[0]["metrics"]]
    seeds = sorted({r["seed"] for r in runs})

    def per_seed(row, metric, pick=lambda r: r["metrics"]):
        vals = []
        for s in seeds:
            v = [pick(r)[row][metric] for r in runs if r["seed"] == s and row in pick(r)]
            v = [x for x in v if x is not None]
            vals.append(float(np.mean(v)) if v else None)
        return mean_sd(vals)

    def n_seeds(row):
        return len({r["seed"] for r in runs if row in r["metrics"]})

    lines = [f"{name}: seeds {seeds}, torch threads 1, {len(runs)} runs", "",
             "| row | seeds | " + " | ".join(METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
    lines += [f"| {row} | {n_seeds(row)} | " + " | ".join(per_seed(row, m) for m in METRICS) + " |" for row in rows]
    if name == "kang_small":
        lines += ["", "R^2 (top-100 DE) per held-out cell type, mean ± sd over seeds:", "",
                  "| row | " + " | ".join(TYPES) + " |", "|---|" + "---|" * len(TYPES)]
        for row in rows:
            cells = [mean_sd(r["metrics"][row]["r2_mean_top100"] for r in runs
                             if r["cell_type"] == t and row in r["metrics"]) for t in TYPES]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
    else:
        types = sorted({t for r in runs for t in r["per_type"]})
        lines += ["", "R^2 (top-100 DE) per control-labelled type (stim cells typed by the classifier):", "",
                  "| row | " + " | ".join(types) + " |", "|---|" + "---|" * len(types)]
        for row in rows:
            cells = [mean_sd(r["per_type"][t][row]["r2_mean_top100"] for r in runs if t in r["per_type"]) for t in types]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
    timed = sorted({k for r in runs for k, v in r["cost"].items() if "cpu_s" in v})
    params = {k: v["n_params"] for r in runs for k, v in r["cost"].items() if "n_params" in v}
    lines += ["", "training CPU seconds per child, mean over runs (vae+pflow_mlp: the VAE and the MLP flow; the other "
              "flows reuse that VAE): " + ", ".join(
                  f"{k} {np.mean([r['cost'][k]['cpu_s'] for r in runs if k in r['cost']]):.1f}" for k in timed),
              "flow network parameters: " + ", ".join(f"{k} {v:,}" for k, v in sorted(params.items())),
              f"child processes in all: {sum(r['child_cpu_s'] for r in runs):.0f} CPU s, "
              f"{sum(r['child_wall_s'] for r in runs):.0f} wall s (2 cores shared with other work)"]
    return "\n".join(lines)


def figure(result: dict, path: Path) -> None:
    """Bars: R^2 (top-100 DE) per held-out cell type and row, mean over seeds with the sd as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    rows = [r for r in SMALL_ROWS if any(r in run["metrics"] for run in runs)]
    fig, ax = plt.subplots(figsize=(10, 3.8))
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        vals = [[r["metrics"][row]["r2_mean_top100"] for r in runs if r["cell_type"] == t and row in r["metrics"]]
                for t in TYPES]
        ax.bar(np.arange(len(TYPES)) + i * width, [np.mean(v) for v in vals], width,
               yerr=[np.std(v, ddof=1) if len(v) > 1 else 0 for v in vals], label=row)
    ax.axhline(0.9, color="k", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(TYPES)) + 0.4 - width / 2, TYPES)
    ax.set_ylabel("R^2 of means, top-100 DE")
    ax.set_ylim(0.2, 1.0)
    ax.set_title("kang2018_ifnb_small_labeled, held-out cell type (mean ± sd over 3 seeds)")
    ax.legend(fontsize=7, ncol=4, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)


def run_one(row: str, dataset: str, seed: int, smoke: bool, methods: list[str] | None = None,
            vae_steps: int = 600, flow_steps: int = 400, cells: int = 4000) -> dict:
    """One held-out cell type (``kang_small``) or the subsampled full data (``kang_full``, row ``all``), one seed.

    ``methods``: the rows of the tables (default: every row of that dataset); ``cells``: kang_full's subsample.
    """
    import torch

    torch.set_num_threads(1)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    wall = time.perf_counter()
    budget = {"vae_steps": vae_steps, "flow_steps": flow_steps}
    if dataset == "kang_small":
        run = small_worker(row, seed, budget, methods or SMALL_ROWS, smoke)
    else:
        run = full_worker(seed, budget, methods or FULL_ROWS, cells, smoke)
    run["child_cpu_s"], run["child_wall_s"] = cpu_seconds(), time.perf_counter() - wall
    return run


BENCHMARK = Benchmark(
    rows={**{t: {"held_out": t} for t in TYPES}, "all": {"held_out": None}},
    datasets=("kang_small", "kang_full"), run_one=run_one, table=table, figure=figure,
    default_rows={"kang_small": tuple(TYPES), "kang_full": ("all",)},
    options={"methods": None, "vae_steps": 600, "flow_steps": 400, "cells": 4000},
    smoke={"vae_steps": 3, "flow_steps": 3}, smoke_rows=("B cells",),
)

if __name__ == "__main__":
    sys.exit(script_main(__file__))
