"""Foundation benchmark (issue 2): StateFlow on real data, EVALUATION.md protocol, 3 seeds.

Usage::

    python benchmarks/foundation.py --dataset pbmc3k --seeds 0 1 2 --out benchmarks/results/foundation_pbmc3k.json

Prints a Markdown table of mean +- sd over seeds (ratios to the floor, c2st, coverage, dcr, label
accuracy, train wall/CPU seconds) and, for the first seed's model, sampling throughput and NFE per
solver. Wall-clock and CPU seconds are both reported; torch's thread count is stated.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from exprflow.data import read_adata
from exprflow.experiment import ExperimentSpec, run_experiment, split_adata
from exprflow.io import write_text_atomic
from exprflow.models import StateFlow

from bench_common import DATASETS, RATIOS, RAW, cpu_seconds, mean_sd as _ms

ROW = RATIOS


def sampler_table(adata, condition_key: str, seed: int, max_steps: int | None) -> list[dict]:
    """Train one model, then time 10,000 generated cells per solver (median of 3 runs)."""
    train, _ = split_adata(adata, None, condition_key, 0)
    torch.manual_seed(seed)
    model = StateFlow(train, condition_key=condition_key).train(max_steps=max_steps, seed=seed, progress_bar=False)
    rows = []
    for solver, n_steps in [("euler", 16), ("heun", 8), ("rk4", 4), ("dopri5", 16)]:
        walls, cpus, nfe = [], [], 0
        for rep in range(3):
            c0, w0 = cpu_seconds(), time.perf_counter()
            out = model.generate(n_cells=10_000, n_steps=n_steps, solver=solver, seed=rep)
            walls.append(time.perf_counter() - w0)
            cpus.append(cpu_seconds() - c0)
            nfe = out.uns["exprflow"]["nfe"]
        rows.append({"solver": solver, "n_steps": n_steps, "nfe": nfe, "median_wall_s": float(np.median(walls)),
                     "median_cpu_s": float(np.median(cpus)), "cells_per_s": 10_000 / float(np.median(walls))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="pbmc3k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-steps", type=int, default=None, help="training steps (default: the model's)")
    parser.add_argument("--no-samplers", action="store_true", help="skip the sampler timing table")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    path, key = DATASETS[args.dataset]
    adata = read_adata(path)
    runs = []
    for seed in args.seeds:
        spec = ExperimentSpec(model="state", max_steps=args.max_steps, seed=seed)
        summary = run_experiment(adata, spec, None, condition_key=key, plots=False, progress_bar=False)
        runs.append(summary)
        m = summary["metrics"]
        logging.warning("seed %d: energy %.2fx floor, c2st_knn %.3f, train %.0f s", seed,
                        m["ratio_to_floor"]["energy"], m["metrics"]["c2st_knn"], summary["train_wall_s"])
        result = _result(args, key, runs, [])
        write_text_atomic(json.dumps(result, indent=2), args.out)  # after every seed: a cut run keeps what it has
    samplers = [] if args.no_samplers else sampler_table(adata, key, args.seeds[0], args.max_steps)
    result = _result(args, key, runs, samplers)
    write_text_atomic(json.dumps(result, indent=2), args.out)
    logging.warning("\n%s", markdown(result))


def _result(args, key: str, runs: list, samplers: list) -> dict:
    return {"dataset": args.dataset, "condition_key": key, "torch_threads": torch.get_num_threads(),
            "seeds": [r["spec"]["seed"] for r in runs], "runs": runs, "samplers": samplers}


def markdown(result: dict) -> str:
    runs = result["runs"]
    lines = [f"dataset {result['dataset']}, seeds {result['seeds']}, torch threads {result['torch_threads']}", "",
             "| metric | mean ± sd |", "|---|---|"]
    for name in ROW:
        lines.append(f"| {name} / floor | {_ms(r['metrics']['ratio_to_floor'].get(name) for r in runs)} |")
    for name in RAW:
        lines.append(f"| {name} | {_ms(r['metrics']['metrics'].get(name) for r in runs)} |")
        lines.append(f"| {name} (floor) | {_ms(r['metrics']['floor'].get(name) for r in runs)} |")
    for name in ["train_wall_s", "train_cpu_s"]:
        lines.append(f"| {name} | {_ms(r[name] for r in runs)} |")
    if result["samplers"]:
        lines += ["", "| solver | steps | NFE | median wall s (10k cells) | median CPU s | cells/s |", "|---|---|---|---|---|---|"]
        for s in result["samplers"]:
            lines.append(f"| {s['solver']} | {s['n_steps']} | {s['nfe']} | {s['median_wall_s']:.2f} | "
                         f"{s['median_cpu_s']:.2f} | {s['cells_per_s']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "--table":  # re-print the table of a saved result
        print(markdown(json.loads(Path(sys.argv[2]).read_text())))  # noqa: T201 (a script's output)
    else:
        main()
