"""Foundation benchmark (issue 2): StateFlow on real data, EVALUATION.md protocol, 3 seeds.

Usage::

    python -m benchmarks foundation --dataset pbmc3k --seeds 0 1 2
    python -m benchmarks foundation --dataset pbmc3k --rows state samplers   # with the sampler timing table
    python -m benchmarks foundation --table benchmarks/results/foundation_pbmc3k.json   # a saved (older) result

Row ``state``: StateFlow with its defaults, trained, generating the test split's cells and scored; the
table is a Markdown table of mean +- sd over seeds (ratios to the floor, c2st, coverage, dcr, label
accuracy, train wall/CPU seconds). Row ``samplers``: for one seed's model, sampling throughput and NFE per
solver (the first seed only). Wall-clock and CPU seconds are both reported;
torch's thread count is stated.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from bench_common import DATASETS, RATIOS, RAW, cpu_seconds, load, mean_sd as _ms
from harness import Benchmark, script_main

ROW = RATIOS


def sampler_table(adata, condition_key: str, seed: int, max_steps: int | None, n_cells: int = 10_000) -> list[dict]:
    """Train one model, then time ``n_cells`` generated cells per solver (median of 3 runs)."""
    import torch

    from exprflow.experiment import split_adata
    from exprflow.models import StateFlow

    train, _ = split_adata(adata, None, condition_key, 0)
    torch.manual_seed(seed)
    model = StateFlow(train, condition_key=condition_key).train(max_steps=max_steps, seed=seed, progress_bar=False)
    rows = []
    for solver, n_steps in [("euler", 16), ("heun", 8), ("rk4", 4), ("dopri5", 16)]:
        walls, cpus, nfe = [], [], 0
        for rep in range(3):
            c0, w0 = cpu_seconds(), time.perf_counter()
            out = model.generate(n_cells=n_cells, n_steps=n_steps, solver=solver, seed=rep)
            walls.append(time.perf_counter() - w0)
            cpus.append(cpu_seconds() - c0)
            nfe = out.uns["exprflow"]["nfe"]
        rows.append({"solver": solver, "n_steps": n_steps, "nfe": nfe, "median_wall_s": float(np.median(walls)),
                     "median_cpu_s": float(np.median(cpus)), "cells_per_s": n_cells / float(np.median(walls))})
    return rows


def run_one(row: str, dataset: str, seed: int, smoke: bool, max_steps: int | None = None,
            n_cells: int = 10_000) -> dict:
    """``state``: the protocol run of one seed (its summary); ``samplers``: the sampler timing table."""
    from exprflow.experiment import ExperimentSpec, run_experiment

    adata, key = load(dataset, smoke), DATASETS[dataset][1]
    if row == "samplers":
        return {"samplers": sampler_table(adata, key, seed, max_steps, n_cells)}
    spec = ExperimentSpec(model="state", max_steps=max_steps, seed=seed)
    return run_experiment(adata, spec, None, condition_key=key, plots=False, progress_bar=False)


def markdown(result: dict) -> str:
    """Mean ± sd over the ``state`` runs, and the sampler table when a ``samplers`` run is there."""
    runs = [r for r in result["runs"] if r.get("row", "state") == "state"]  # older results: no row
    samplers = result.get("samplers") or [s for r in result["runs"] if r.get("row") == "samplers" for s in r["samplers"]]
    lines = [f"dataset {result['dataset']}, seeds {result['seeds']}, torch threads {result['torch_threads']}", "",
             "| metric | mean ± sd |", "|---|---|"]
    for name in ROW:
        lines.append(f"| {name} / floor | {_ms(r['metrics']['ratio_to_floor'].get(name) for r in runs)} |")
    for name in RAW:
        lines.append(f"| {name} | {_ms(r['metrics']['metrics'].get(name) for r in runs)} |")
        lines.append(f"| {name} (floor) | {_ms(r['metrics']['floor'].get(name) for r in runs)} |")
    for name in ["train_wall_s", "train_cpu_s"]:
        lines.append(f"| {name} | {_ms(r[name] for r in runs)} |")
    if samplers:
        lines += ["", "| solver | steps | NFE | median wall s (10k cells) | median CPU s | cells/s |", "|---|---|---|---|---|---|"]
        for s in samplers:
            lines.append(f"| {s['solver']} | {s['n_steps']} | {s['nfe']} | {s['median_wall_s']:.2f} | "
                         f"{s['median_cpu_s']:.2f} | {s['cells_per_s']:.0f} |")
    return "\n".join(lines)


BENCHMARK = Benchmark(
    rows={"state": {"model": "state"}, "samplers": {"model": "state", "solvers": "euler16 heun8 rk4 dopri5-16"}},
    datasets=("pbmc3k", "kang2018_ifnb"), run_one=run_one, table=markdown, default_rows=("state",),
    options={"max_steps": None, "n_cells": 10_000}, smoke={"max_steps": 5, "n_cells": 200},
    smoke_rows=("state", "samplers"), once_rows=("samplers",),
)

if __name__ == "__main__":
    sys.exit(script_main(__file__))
