"""Genes as a set on all genes of a large dataset, with the cells subsampled: the ``sets.py`` grid on a
random subset of cells, every gene kept.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/sets_subsample.py --dataset kang2018_ifnb --cells 600 --params 400000 \\
        --max-steps 50 --seeds 0 --out benchmarks/results/sets_kang2018_ifnb_600cells.json
    python benchmarks/sets_subsample.py --table benchmarks/results/sets_kang2018_ifnb_600cells.json

The full protocol on kang2018_ifnb (13,999 cells x 14,053 genes) costs a set model 1.8-11 s per training
step and 0.4-2.3 s per generated cell on one CPU thread (``sets_cost.py --flow-step``), about 20
core-hours for the grid. Here ``--cells`` cells are drawn at random (``numpy`` generator seeded with
``--subsample-seed``, the same subset for every row and seed) **before** the split of the evaluation
protocol, so training, generation (the test split's cells), the protocol metrics and the control-cell
probe all run on that subset; every gene is kept. Each row is the backbone of ``sets.py`` at the width
whose parameter count is the closest to ``--params``, trained for the same ``--max-steps`` of
``--batch-size``; the probe and the table are those of ``sets.py``.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import tempfile
from pathlib import Path

import numpy as np
import sets
from bench_common import DATASETS, grid_main


def subsample(adata, n_cells: int, seed: int):
    """``n_cells`` cells of ``adata`` drawn without replacement (all of them if it has fewer), in file order."""
    if n_cells >= adata.n_obs:
        return adata
    keep = np.sort(np.random.default_rng(seed).choice(adata.n_obs, size=n_cells, replace=False))
    return adata[keep].copy()


def run_one(args, row: str, seed: int) -> dict:
    """One (backbone, seed) on the subsampled cells: train, generate, evaluate, probe (in this process)."""
    import torch

    from exprflow.data import read_adata
    from exprflow.experiment import ExperimentSpec, run_experiment, split_adata
    from exprflow.models import StateFlow

    torch.set_num_threads(args.threads)
    path, key = DATASETS[args.dataset]
    adata = subsample(read_adata(path), args.cells, args.subsample_seed)
    train, test = split_adata(adata, None, key, 0)
    n_conditions = train.obs[key].astype(str).nunique()
    if row == "rank_tokens":
        sets.BASE_KWARGS[row]["max_tokens"] = args.max_tokens
    kwargs = sets.matched_kwargs(row, adata.n_vars, n_conditions, args.params)
    spec = ExperimentSpec(model="state", model_kwargs={"backbone": row, "backbone_kwargs": kwargs},
                          max_steps=args.max_steps, batch_size=args.batch_size, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        summary = run_experiment(adata, spec, Path(tmp) / "run", condition_key=key, plots=False, progress_bar=False)
        model = StateFlow.load(str(Path(tmp) / "run" / "model"))
    result = {k: summary[k] for k in ("train_wall_s", "train_cpu_s", "generate_wall_s", "generate_cpu_s",
                                      "cells_per_s", "n_train", "n_test", "n_genes", "metrics")}
    result.update(row=row, seed=seed, backbone_kwargs=kwargs, torch_threads=torch.get_num_threads(),
                  n_parameters=sum(p.numel() for p in model.backbone.parameters()),
                  probe=sets.probes(model, train, test, sets.LABELS[args.dataset]),
                  peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="kang2018_ifnb")
    parser.add_argument("--cells", type=int, default=600, help="cells drawn at random before the split")
    parser.add_argument("--subsample-seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--rows", nargs="+", default=sets.ROWS, choices=sets.ROWS)
    parser.add_argument("--params", type=int, default=400_000, help="target parameter count of every backbone")
    parser.add_argument("--max-steps", type=int, default=50, help="training steps (same for every row)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=512, help="rank_tokens sequence cap")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each worker")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table", type=Path, nargs="+", help="print the table of saved result(s) and exit")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    result = {"dataset": args.dataset, "cells": args.cells, "subsample_seed": args.subsample_seed,
              "seeds": args.seeds, "torch_threads": None, "params": args.params, "max_steps": args.max_steps,
              "batch_size": args.batch_size, "max_tokens": args.max_tokens,
              "command": "OMP_NUM_THREADS=1 python benchmarks/sets_subsample.py " + " ".join(sys.argv[1:])}
    extra = ["--cells", str(args.cells), "--subsample-seed", str(args.subsample_seed), "--params", str(args.params),
             "--max-steps", str(args.max_steps), "--batch-size", str(args.batch_size),
             "--max-tokens", str(args.max_tokens), "--threads", str(args.threads)]
    grid_main(__file__, args, run_one, sets.markdown, result, extra)


if __name__ == "__main__":
    main()
