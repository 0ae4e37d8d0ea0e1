"""Genes as a set on all genes of a large dataset, with the cells subsampled: the ``sets.py`` grid on a
random subset of cells, every gene kept.

Usage::

    python -m benchmarks sets_subsample --dataset kang2018_ifnb --seeds 0 --set cells=600 --set params=400000 \
        --set max_steps=50
    python -m benchmarks sets_subsample --table benchmarks/results/sets_kang2018_ifnb_600cells.json

The full protocol on kang2018_ifnb (13,999 cells x 14,053 genes) costs a set model 1.8-11 s per training
step and 0.4-2.3 s per generated cell on one CPU thread (``sets_cost.py --flow-step``), about 20
core-hours for the grid. Here the option ``cells`` cells are drawn at random (``numpy`` generator seeded with
the option ``subsample_seed``, the same subset for every row and seed) **before** the split of the evaluation
protocol, so training, generation (the test split's cells), the protocol metrics and the control-cell
probe all run on that subset; every gene is kept. Each row is the backbone of ``sets.py`` at the width
whose parameter count is the closest to ``params``, trained for the same ``max_steps`` of
``batch_size``; the probe and the table are those of ``sets.py``.
"""

from __future__ import annotations

import resource
import sys
import tempfile
from pathlib import Path

import numpy as np
import sets
from bench_common import DATASETS, load
from harness import Benchmark, script_main


def subsample(adata, n_cells: int, seed: int):
    """``n_cells`` cells of ``adata`` drawn without replacement (all of them if it has fewer), in file order."""
    if n_cells >= adata.n_obs:
        return adata
    keep = np.sort(np.random.default_rng(seed).choice(adata.n_obs, size=n_cells, replace=False))
    return adata[keep].copy()


def run_one(row: str, dataset: str, seed: int, smoke: bool, cells: int = 600, subsample_seed: int = 0,
            params: int = 400_000, max_steps: int = 50, batch_size: int = 32, max_tokens: int = 512) -> dict:
    """One (backbone, seed) on the subsampled cells: train, generate, evaluate, probe (in this process)."""
    import torch

    from exprflow.experiment import ExperimentSpec, run_experiment, split_adata
    from exprflow.models import StateFlow

    key = DATASETS[dataset][1]
    adata = subsample(load(dataset, smoke), cells, subsample_seed)
    train, test = split_adata(adata, None, key, 0)
    n_conditions = train.obs[key].astype(str).nunique()
    if row == "rank_tokens":
        sets.BASE_KWARGS[row]["max_tokens"] = max_tokens
    kwargs = sets.matched_kwargs(row, adata.n_vars, n_conditions, params)
    spec = ExperimentSpec(model="state", model_kwargs={"backbone": row, "backbone_kwargs": kwargs},
                          max_steps=max_steps, batch_size=batch_size, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        summary = run_experiment(adata, spec, Path(tmp) / "run", condition_key=key, plots=False, progress_bar=False)
        model = StateFlow.load(str(Path(tmp) / "run" / "model"))
    result = {k: summary[k] for k in ("train_wall_s", "train_cpu_s", "generate_wall_s", "generate_cpu_s",
                                      "cells_per_s", "n_train", "n_test", "n_genes", "metrics")}
    result.update(row=row, seed=seed, backbone_kwargs=kwargs, torch_threads=torch.get_num_threads(),
                  n_parameters=sum(p.numel() for p in model.backbone.parameters()),
                  probe=sets.probes(model, train, test, "cell_type" if smoke else sets.LABELS[dataset]),
                  peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result


BENCHMARK = Benchmark(
    rows={row: {"backbone": row, **sets.BASE_KWARGS[row]} for row in sets.ROWS},
    datasets=("kang2018_ifnb",), run_one=run_one, table=sets.markdown,
    options={"cells": 600, "subsample_seed": 0, "params": 400_000, "max_steps": 50, "batch_size": 32,
             "max_tokens": 512},
    smoke={"cells": 200, "params": 5_000, "max_steps": 3, "batch_size": 8, "max_tokens": 64},
    smoke_rows=("mlp", "deepsets"),
)

if __name__ == "__main__":
    sys.exit(script_main(__file__))
