"""Latent-flow benchmark (issue 3): LatentFlow vs scVI prior sampling vs StateFlow, one table.

Usage::

    python -m benchmarks latent --dataset pbmc3k --seeds 0 1 2
    python -m benchmarks latent --dataset kang2018_ifnb --set scvi_epochs=12
    python -m benchmarks latent --dataset pbmc3k --rows latent:zinb latent:poisson --seeds 0
    python -m benchmarks latent --table benchmarks/results/latent_pbmc3k.json    # a saved (older) result

Rows: ``latent:<likelihood>`` (LatentFlow with its defaults and that decoder likelihood), ``scvi``
(scVI prior sampling, condition as scVI batch; needs the bench extra) and ``state`` (StateFlow with its
defaults). Every (row, seed) runs in its own worker process (``benchmarks/harness.py``), so its peak
memory (``ru_maxrss``) is its own; the EVALUATION.md split is seed 0 for all rows, the model seed varies.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

from bench_common import DATASETS, grid_table, load
from harness import Benchmark, script_main

HERE = Path(__file__).resolve().parent
ROWS = {"latent:nb": {"model": "latent", "likelihood": "nb"}, "latent:zinb": {"model": "latent", "likelihood": "zinb"},
        "latent:poisson": {"model": "latent", "likelihood": "poisson"}, "scvi": {"model": "scvi"},
        "state": {"model": "state"}}


def run_one(row: str, dataset: str, seed: int, smoke: bool, scvi_epochs: int | None = None,
            max_steps: int | None = None, flow_steps: int | None = None) -> dict:
    """Train, generate the test split's cells, evaluate (in this process).

    ``max_steps`` / ``flow_steps``: the training budget (None: the model's defaults, the benchmark's
    setting; the smoke configuration cuts them).
    """
    import torch

    from exprflow.experiment import ExperimentSpec, run_experiment, split_adata
    from exprflow.metrics import evaluate

    key = DATASETS[dataset][1]
    adata = load(dataset, smoke)
    if row == "scvi":
        sys.path.insert(0, str(HERE))
        from baselines.scvi_prior import scvi_prior_generate

        train, test = split_adata(adata, None, key, 0)
        request = test.obs[key].astype(str).to_numpy()
        generated, info = scvi_prior_generate(train, key, request, len(request), max_epochs=scvi_epochs, seed=seed)
        metrics = evaluate(test, generated, train, condition_key=key, seed=seed)
        result = {"train_wall_s": info["train_wall_s"], "train_cpu_s": info["train_cpu_s"], "metrics": metrics,
                  "info": {k: v for k, v in info.items() if k not in ("train_wall_s", "train_cpu_s")}}
    else:
        model, _, likelihood = row.partition(":")
        kwargs = {"vae": {"likelihood": likelihood}} if model == "latent" else {}
        train_kwargs = {} if flow_steps is None or model != "latent" else {"flow_steps": flow_steps}
        spec = ExperimentSpec(model=model, model_kwargs=kwargs, seed=seed, max_steps=max_steps,
                              train_kwargs=train_kwargs)
        summary = run_experiment(adata, spec, None, condition_key=key, plots=False, progress_bar=False)
        result = {k: summary[k] for k in ("train_wall_s", "train_cpu_s", "generate_wall_s", "cells_per_s", "metrics")}
    result.update(row=row, seed=seed, torch_threads=torch.get_num_threads(),
                  peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result


def markdown(result: dict) -> str:
    """One table: a column per row (model), mean ± sd over seeds."""
    return grid_table(result, extra=[(n, lambda r, n=n: r.get(n)) for n in ("train_wall_s", "train_cpu_s", "peak_rss_mb")])


BENCHMARK = Benchmark(
    rows=ROWS, datasets=("pbmc3k", "kang2018_ifnb"), run_one=run_one, table=markdown,
    options={"scvi_epochs": None, "max_steps": None, "flow_steps": None},
    smoke={"scvi_epochs": 1, "max_steps": 5, "flow_steps": 5},
    default_rows=("latent:nb", "scvi", "state"), smoke_rows=("latent:nb", "state"),
)

if __name__ == "__main__":
    sys.exit(script_main(__file__))
