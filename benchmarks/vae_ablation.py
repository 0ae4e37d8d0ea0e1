"""Ablation of LatentFlow's defaults: one lever per row, scored with the protocol (docs/evaluation.md).

Usage::

    python -m benchmarks vae_ablation --dataset pbmc3k --rows default lat20 wide256 --seeds 0 1 2
    python -m benchmarks vae_ablation --table benchmarks/results/vae_ablation_pbmc3k.json   # saved results
    python -m benchmarks --list

A row is LatentFlow with its defaults and the overrides in :data:`ROWS` (constructor options, and
``train()`` budgets ``vae_steps`` / ``flow_steps``). Every (row, seed) runs in its own worker process
(``benchmarks/harness.py``), so CPU seconds and peak RSS (``ru_maxrss``) are its
own; split seed 0 for every row, the model seed varies. Each run is scored twice: per condition (the
protocol's average over conditions) and over the whole population (``condition_key=None``: what a user
who generates a whole dataset sees, proportions included).
"""

from __future__ import annotations

import resource
import sys
import time

from bench_common import DATASETS, cpu_seconds, grid_table, load, save_figure
from harness import Benchmark, script_main

#: row -> (LatentFlow constructor overrides, train() overrides)
ROWS: dict[str, tuple[dict, dict]] = {
    "default": ({}, {}),
    # latent size against the VAE budget
    "lat20": ({"vae": {"n_latent": 20}}, {}),
    "lat20_vae2x": ({"vae": {"n_latent": 20}}, {"vae_steps": 12000}),
    "vae2x": ({}, {"vae_steps": 12000}),
    "vae_half": ({}, {"vae_steps": 3000}),
    "vae6k": ({}, {"vae_steps": 6000}),
    # encoder / decoder width and depth, normalisation
    "wide256": ({"vae": {"n_hidden": 256}}, {}),
    "deep2": ({"vae": {"n_layers": 2}}, {}),
    "norm_batch": ({"vae": {"norm": "batch"}}, {}),
    # KL weight and warm-up
    "kl0.1": ({"vae": {"kl_weight": 0.1}}, {}),
    "kl_warm0.25": ({"vae": {"kl_warmup_fraction": 0.25}}, {}),
    "kl_warm1.0": ({"vae": {"kl_warmup_fraction": 1.0}}, {}),
    # scVI's VAE choices that differ from the default: BatchNorm, KL warmed up over all of training
    "scvi_like": ({"vae": {"norm": "batch", "kl_warmup_fraction": 1.0}}, {}),
    "autoencoder": ({"vae": {"deterministic": True}}, {}),
    # likelihood
    "zinb": ({"vae": {"likelihood": "zinb"}}, {}),
    "poisson": ({"vae": {"likelihood": "poisson"}}, {}),
    # library size: a flow coordinate (default) or a per-condition log-normal
    "lib_lognormal": ({"library": "lognormal"}, {}),
    # the flow
    "flow_wide512": ({"backbone_kwargs": {"hidden": 512, "depth": 4}}, {}),
    "flow_8k": ({}, {"flow_steps": 8000}),
    "flow_no_ema": ({"flow_optim": {"ema_decay": 0.0}}, {}),
    "flow_ot": ({"coupling": "ot"}, {}),
    # the flow's training states: encoder means (default) or draws z ~ q(z|x), 4 per cell
    "posterior4": ({"posterior_draws": 4}, {}),
    # the decoder (and encoder) conditioned on the condition label (scVI's covariate route: the label is
    # the VAE's batch key, each generated cell is decoded with its own label) instead of the latent alone
    "cond_decoder": ({}, {}),
    # the encoder: genes as a set (scLDM's design, DeepSets form) instead of a fixed-order vector
    "set_encoder": ({"vae": {"encoder": "set"}}, {}),
    # the representation: a user's scVI model (scVI's defaults, 10 latents) under the same flow
    "scvi_vae": ({}, {}),
}
#: rows whose representation is a trained scVI model (LatentFlow.from_scvi) instead of exprflow's own VAE
SCVI_ROWS = {"scvi_vae"}
#: rows whose VAE reads the condition label as its batch covariate (decoded with each cell's own label)
LABEL_VAE_ROWS = {"cond_decoder"}


def run_one(row: str, dataset: str, seed: int, smoke: bool, vae_steps: int | None = None,
            flow_steps: int | None = None, scvi_epochs: int | None = None) -> dict:
    """Train the row's LatentFlow on the seed-0 split, generate the test cells, score twice.

    ``vae_steps`` / ``flow_steps``: cut every row's budget (the smoke configuration); None keeps the row's.
    ``scvi_epochs``: the scVI model's epochs in :data:`SCVI_ROWS` (None: scVI's own default heuristic).
    """
    import torch

    from exprflow.experiment import split_adata
    from exprflow.metrics import evaluate
    from exprflow.models import LatentFlow

    model_kwargs, train_kwargs = ROWS[row]
    train_kwargs = {**train_kwargs, **{k: v for k, v in (("vae_steps", vae_steps), ("flow_steps", flow_steps))
                                       if v is not None}}
    key = DATASETS[dataset][1]
    train, test = split_adata(load(dataset, smoke), None, key, 0)
    c0, w0 = cpu_seconds(), time.perf_counter()
    if row in SCVI_ROWS:
        model = _scvi_flow(train, key, seed, scvi_epochs)
        train_kwargs.pop("vae_steps", None)
    else:
        label_vae = {"batch_key": key} if row in LABEL_VAE_ROWS else {}
        model = LatentFlow(train, condition_key=key, **label_vae, **model_kwargs)
    model.train(seed=seed, progress_bar=False, **train_kwargs)
    train_wall, train_cpu = time.perf_counter() - w0, cpu_seconds() - c0
    request = {k: int(v) for k, v in test.obs[key].astype(str).value_counts().items() if v > 0}
    if row in LABEL_VAE_ROWS:  # one call per label, decoded as that label
        import anndata as ad

        generated = ad.concat([model.generate(conditions={c: n}, batch=c, seed=seed + i)
                               for i, (c, n) in enumerate(request.items())], index_unique="-")
    else:
        generated = model.generate(conditions=request, seed=seed)
    per_condition = evaluate(test, generated, train, condition_key=key, seed=seed)
    population = evaluate(test, generated, train, condition_key=None, seed=seed)
    return {"row": row, "seed": seed, "model_kwargs": model_kwargs, "train_kwargs": train_kwargs,
            "vae_steps_trained": len(getattr(model.representation, "history", None) or []),
            "train_wall_s": train_wall, "train_cpu_s": train_cpu, "torch_threads": torch.get_num_threads(),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "loadavg_1m_end": _loadavg(), "metrics": per_condition, "population": population}


def _scvi_flow(train, key: str, seed: int, max_epochs: int | None):
    """A LatentFlow on an scVI model trained here with scVI's defaults (10 latents, NB; ``max_epochs``
    None = scVI's heuristic) on a copy of the train cells: only the flow is left to train."""
    from exprflow.models import LatentFlow
    from exprflow.representations.scvi_latent import import_scvi

    scvi = import_scvi()
    scvi.settings.seed = seed
    adata = train.copy()
    scvi.model.SCVI.setup_anndata(adata)
    vae = scvi.model.SCVI(adata, n_latent=10, gene_likelihood="nb")
    vae.train(max_epochs=max_epochs, enable_progress_bar=False, accelerator="cpu")
    return LatentFlow.from_scvi(vae, condition_key=key)


def _loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def markdown(result: dict) -> str:
    """The per-condition table (protocol), then the whole-population ratios, a column per row."""
    extra = [(n, lambda r, n=n: r.get(n)) for n in ("train_wall_s", "train_cpu_s", "peak_rss_mb", "loadavg_1m_end")]
    extra += [(f"population {n} / floor", lambda r, n=n: r["population"]["ratio_to_floor"].get(n))
              for n in ("w2", "mmd", "energy", "coverage")]
    extra += [(f"population {n}", lambda r, n=n: r["population"]["metrics"].get(n)) for n in ("c2st_knn", "dcr")]
    return grid_table(result, extra=extra)


#: rows that differ only in the VAE's step budget, joined by a line in the figure (budget order)
BUDGET_ROWS = ("vae_half", "default", "vae6k", "vae2x")


def figure(result: dict, path) -> None:
    """Quality against training CPU-seconds, a point per row (mean over its seeds): the energy ratio and
    c2st_knn (floor dashed); the VAE budget rows joined by a line. What a budget buys per CPU-second."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    by_row: dict[str, list[dict]] = {}
    for run in result["runs"]:
        by_row.setdefault(run["row"], []).append(run)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (label, value) in zip(axes, [("energy / floor", lambda r: r["metrics"]["ratio_to_floor"]["energy"]),
                                         ("c2st_knn (floor dashed)", lambda r: r["metrics"]["metrics"]["c2st_knn"])]):
        points = {row: (np.mean([r["train_cpu_s"] for r in runs]), np.mean([value(r) for r in runs]))
                  for row, runs in by_row.items()}
        for row, (x, y) in points.items():
            ax.scatter(x, y, color="tab:blue" if row in BUDGET_ROWS else "tab:gray", zorder=3)
            ax.annotate(row, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        line = [points[row] for row in BUDGET_ROWS if row in points]
        if len(line) > 1:
            ax.plot(*zip(*line), color="tab:blue", lw=1)
        if label.startswith("c2st"):
            floor = np.mean([r["metrics"]["floor"]["c2st_knn"] for runs in by_row.values() for r in runs])
            ax.axhline(floor, ls="--", color="k", lw=0.8)
        ax.set_xlabel("training CPU-seconds")
        ax.set_ylabel(label)
    save_figure(fig, path, f"LatentFlow levers on {result['dataset']}: quality vs training cost "
                           f"(seeds {sorted({r['seed'] for r in result['runs']})})", fontsize=10)


BENCHMARK = Benchmark(
    rows={name: {"model_kwargs": m, "train_kwargs": t} for name, (m, t) in ROWS.items()},
    datasets=("pbmc3k", "kang2018_ifnb", "mouse_bladder_han2018", "worm_neuron_cao2017"), run_one=run_one,
    table=markdown, figure=figure, options={"vae_steps": None, "flow_steps": None, "scvi_epochs": None},
    smoke={"vae_steps": 5, "flow_steps": 5, "scvi_epochs": 1},
    default_rows=("default",), smoke_rows=("default", "scvi_vae", "cond_decoder"),
)

if __name__ == "__main__":
    sys.exit(script_main(__file__))
