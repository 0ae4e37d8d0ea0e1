"""Quality and cost of the state-vector flow with sequence backbones on the gene axis (issue 4).

Usage::

    python -m benchmarks ssm_quality --dataset mouse_bladder_han2018 --seeds 0 1 2
    python -m benchmarks ssm_quality --table benchmarks/results/ssm_quality_mouse_bladder_han2018.json
    python -m benchmarks ssm_quality --dataset kang2018_ifnb --seeds 0 --rows cost:mlp_matched cost:s4d \
        cost:hyena cost:mamba cost:transformer cost:mlp_default

Rows: ``s4d``, ``hyena``, ``mamba``, ``transformer`` (each: width 64, depth 2, 128 genes per position,
rank-16 per-gene skip) and ``mlp_matched`` (the MLP backbone with its hidden width chosen so that its
parameter count is the closest to the S4D row's: on 20k genes its ``G x width`` layers leave it a width of
a few units), plus ``mlp_default`` (the MLP with StateFlow's default width 256, for the cost of the
``G x width`` layers; cost rows only). Every row gets the same budget (options ``max_steps`` steps of batch
``batch_size``), the EVALUATION.md split (seed 0) and protocol; every (row, seed) runs in its own worker
process so its peak RSS is its own. Time per epoch = training wall seconds x train cells / (steps x batch).
Rows ``cost:<row>`` train nothing to the end: parameters, seconds per step and peak RSS of that row.
"""

from __future__ import annotations

import resource
import sys

from bench_common import DATASETS, grid_table, load, status_mb
from harness import Benchmark, script_main

SEQUENCE = {"width": 64, "depth": 2, "patch_size": 128, "skip_rank": 16, "time_dim": 64}
ROWS = ["mlp_matched", "s4d", "hyena", "mamba", "transformer", "mlp_default"]
QUALITY_ROWS = ROWS[:-1]  # mlp_default is in the cost table (its quality at full budget: foundation.py)


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


def run_one(row: str, dataset: str, seed: int, smoke: bool, max_steps: int = 500, batch_size: int = 64) -> dict:
    """One quality row (train, generate, evaluate) or, for ``cost:<row>``, its :func:`step_cost`."""
    if row.startswith("cost:"):
        return step_cost(dataset, row.removeprefix("cost:"), seed, max_steps, batch_size, smoke)
    return quality(dataset, row, seed, max_steps, batch_size, smoke)


def quality(dataset: str, row: str, seed: int, max_steps: int, batch_size: int, smoke: bool = False) -> dict:
    import torch

    from exprflow.backbones import BACKBONES
    from exprflow.experiment import ExperimentSpec, run_experiment

    key = DATASETS[dataset][1]
    adata = load(dataset, smoke)
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


def _reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (``VmHWM``) to the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def step_cost(dataset: str, row: str, seed: int, max_steps: int, batch_size: int, smoke: bool = False) -> dict:
    """Seconds per optimiser step (median of 5 after 2 warm-up steps), peak RSS and the RSS before the first
    step (data, representation and model in memory), on the first ``batch_size`` real cells."""
    import time

    import numpy as np
    import torch

    from exprflow.backbones import BACKBONES
    from exprflow.data import prepare_counts
    from exprflow.flows import RectifiedFlow
    from exprflow.representations import StateVector

    data = prepare_counts(load(dataset, smoke), condition_key=DATASETS[dataset][1])
    name, kwargs = backbone_for(row, data.n_genes, len(data.condition_levels))
    torch.manual_seed(seed)
    model = BACKBONES.get(name)(dim=data.n_genes, n_conditions=len(data.condition_levels), **kwargs)
    x1 = StateVector().fit(data.X).encode(data.X[:batch_size])
    cond = torch.as_tensor(data.conditions[:batch_size])
    objective, opt = RectifiedFlow(), torch.optim.AdamW(model.parameters(), lr=1e-4)
    rss_before = status_mb("VmRSS")
    _reset_peak_rss()  # so the peak below is the training steps' own, not the data loading's
    walls, cpus = [], []
    for i in range(7):
        u0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        opt.zero_grad()
        objective.loss(model, x1, cond).backward()
        opt.step()
        u1 = resource.getrusage(resource.RUSAGE_SELF)
        if i >= 2:
            walls.append(time.perf_counter() - w0)
            cpus.append(u1.ru_utime + u1.ru_stime - u0.ru_utime - u0.ru_stime)
    return {"row": row, "seed": seed, "backbone": name, "backbone_kwargs": kwargs, "n_genes": data.n_genes,
            "parameters": n_parameters(model), "step_wall_s": float(np.median(walls)),
            "step_cpu_s": float(np.median(cpus)), "batch_size": batch_size, "torch_threads": torch.get_num_threads(),
            "epoch_wall_s": float(np.median(walls)) * 0.8 * data.n_cells / batch_size,
            "rss_before_mb": rss_before, "step_peak_rss_mb": status_mb("VmHWM")}


def cost_table(result: dict) -> str:
    runs = result["runs"]
    lines = [f"dataset {result['dataset']} ({runs[0]['n_genes']:,} genes), batch {runs[0]['batch_size']}, "
             f"torch threads {runs[0]['torch_threads']}", "",
             "| backbone | parameters | s / step (CPU-s) | s / epoch (train split) | RSS before the steps GB | training-step memory GB |",
             "|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['row']} | {r['parameters']:,} | {r['step_wall_s']:.3f} ({r['step_cpu_s']:.3f}) | "
                     f"{r['epoch_wall_s']:.1f} | {r['rss_before_mb'] / 1024:.2f} | "
                     f"{(r['step_peak_rss_mb'] - r['rss_before_mb']) / 1024:.2f} |")
    return "\n".join(lines)


def markdown(result: dict) -> str:
    """The quality table of the quality rows and the cost table of the cost rows (either may be absent)."""
    cost = [r for r in result["runs"] if "metrics" not in r]
    runs = [r for r in result["runs"] if "metrics" in r]
    parts = [cost_table({**result, "runs": cost})] if cost else []
    if runs:
        parts.insert(0, quality_table({**result, "runs": runs}))
    return "\n\n".join(parts)


def quality_table(result: dict) -> str:
    runs = result["runs"]
    rows = [r for r in ROWS if any(x["row"] == r for x in runs)]
    title = (f"dataset {result['dataset']}, seeds {result['seeds']}, torch threads {result['torch_threads']}, "
             f"{runs[0]['max_steps']} steps of batch {runs[0]['batch_size']}") if runs else None
    extra = [("parameters", lambda r: r["parameters"])]
    extra += [(n, lambda r, n=n: r.get(n)) for n in ("train_wall_s", "train_cpu_s", "epoch_wall_s", "peak_rss_mb",
                                                   "cells_per_s")]
    return grid_table(result, rows, extra, title)


BENCHMARK = Benchmark(
    rows={**{row: {"backbone": row, **({} if row.startswith("mlp") else SEQUENCE)} for row in ROWS},
          **{f"cost:{row}": {"backbone": row, "cost": True} for row in ROWS}},
    datasets=("mouse_bladder_han2018", "kang2018_ifnb"), run_one=run_one, table=markdown,
    options={"max_steps": 500, "batch_size": 64}, smoke={"max_steps": 3, "batch_size": 8},
    default_rows=tuple(QUALITY_ROWS), smoke_rows=("mlp_matched", "s4d", "hyena", "mamba", "transformer", "cost:s4d"),
)

if __name__ == "__main__":
    sys.exit(script_main(__file__))
