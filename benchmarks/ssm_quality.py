"""Quality and cost of the state-vector flow with sequence backbones on the gene axis (issue 4).

Usage::

    python benchmarks/ssm_quality.py --dataset mouse_bladder_han2018 --seeds 0 1 2 \
        --out benchmarks/results/ssm_quality_mouse_bladder_han2018.json
    python benchmarks/ssm_quality.py --table benchmarks/results/ssm_quality_mouse_bladder_han2018.json

Rows: ``s4d``, ``hyena``, ``mamba``, ``transformer`` (each: width 64, depth 2, 128 genes per position,
rank-16 per-gene skip) and ``mlp_matched`` (the MLP backbone with its hidden width chosen so that its
parameter count is the closest to the S4D row's: on 20k genes its ``G x width`` layers leave it a width of
a few units), plus ``mlp_default`` (the MLP with StateFlow's default width 256, for the cost of the
``G x width`` layers). Every row gets the same budget (``--max-steps`` steps of batch ``--batch-size``),
the EVALUATION.md split (seed 0) and protocol; every (row, seed) runs in its own child process so its
peak RSS is its own. Time per epoch = training wall seconds x train cells / (steps x batch).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
from pathlib import Path

from bench_common import DATASETS, grid_table, run_grid

SEQUENCE = {"width": 64, "depth": 2, "patch_size": 128, "skip_rank": 16, "time_dim": 64}
ROWS = ["mlp_matched", "s4d", "hyena", "mamba", "transformer", "mlp_default"]


def n_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


def backbone_for(row: str, n_genes: int, n_conditions: int) -> tuple[str, dict]:
    """``(registry name, kwargs)`` of a row; ``mlp_matched`` searches the hidden width."""
    from exprflow.backbones import BACKBONES

    if row == "mlp_default":
        return "mlp", {"hidden": 256, "depth": 3}
    if row != "mlp_matched":
        return row, dict(SEQUENCE)
    target = n_parameters(BACKBONES.get("s4d")(dim=n_genes, n_conditions=n_conditions, **SEQUENCE))
    best = min(range(2, 257, 2), key=lambda h: abs(n_parameters(
        BACKBONES.get("mlp")(dim=n_genes, n_conditions=n_conditions, hidden=h, depth=2, time_dim=64)) - target))
    return "mlp", {"hidden": best, "depth": 2, "time_dim": 64}


def run_one(dataset: str, row: str, seed: int, max_steps: int, batch_size: int) -> dict:
    import torch

    from exprflow.backbones import BACKBONES
    from exprflow.data import read_adata
    from exprflow.experiment import ExperimentSpec, run_experiment

    path, key = DATASETS[dataset]
    adata = read_adata(path)
    n_levels = adata.obs[key].nunique()
    name, kwargs = backbone_for(row, adata.n_vars, n_levels)
    spec = ExperimentSpec(model="state", model_kwargs={"backbone": name, "backbone_kwargs": kwargs},
                          max_steps=max_steps, batch_size=batch_size, seed=seed)
    summary = run_experiment(adata, spec, None, condition_key=key, plots=False, progress_bar=False)
    epochs = max_steps * batch_size / summary["n_train"]
    result = {k: summary[k] for k in ("train_wall_s", "train_cpu_s", "generate_wall_s", "cells_per_s", "metrics")}
    result.update(row=row, seed=seed, backbone=name, backbone_kwargs=kwargs, torch_threads=torch.get_num_threads(),
                  parameters=n_parameters(BACKBONES.get(name)(dim=adata.n_vars, n_conditions=n_levels, **kwargs)),
                  epoch_wall_s=summary["train_wall_s"] / epochs, n_genes=adata.n_vars, max_steps=max_steps,
                  batch_size=batch_size, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result


def markdown(result: dict) -> str:
    runs = result["runs"]
    rows = [r for r in ROWS if any(x["row"] == r for x in runs)]
    title = (f"dataset {result['dataset']}, seeds {result['seeds']}, torch threads {result['torch_threads']}, "
             f"{runs[0]['max_steps']} steps of batch {runs[0]['batch_size']}") if runs else None
    extra = [("parameters", lambda r: r["parameters"])]
    extra += [(n, lambda r, n=n: r.get(n)) for n in ("train_wall_s", "train_cpu_s", "epoch_wall_s", "peak_rss_mb",
                                                   "cells_per_s")]
    return grid_table(result, rows, extra, title)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="mouse_bladder_han2018")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", default=ROWS, choices=ROWS)
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table", type=Path, help="re-print the table of a saved result and exit")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # "row,seed": run one in this process
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    if args.table:
        sys.stdout.write(markdown(json.loads(args.table.read_text())) + "\n")
        return
    if args.worker:
        row, seed = args.worker.rsplit(",", 1)
        sys.stdout.write(json.dumps(run_one(args.dataset, row, int(seed), args.max_steps, args.batch_size)) + "\n")
        return
    result = {"dataset": args.dataset, "seeds": args.seeds, "torch_threads": None}
    extra = ["--max-steps", str(args.max_steps), "--batch-size", str(args.batch_size)]
    result = run_grid(__file__, args.dataset, args.rows, args.seeds, args.out, result, extra)
    logging.warning("\n%s", markdown(result))


if __name__ == "__main__":
    main()
