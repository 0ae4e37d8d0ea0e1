"""Ablation of LatentFlow's defaults: one lever per row, scored with the protocol (docs/evaluation.md).

Usage::

    python benchmarks/vae_ablation.py --dataset pbmc3k --rows default lat20 wide --seeds 0 \
        --out benchmarks/results/vae_ablation_pbmc3k.json
    python benchmarks/vae_ablation.py --table benchmarks/results/vae_ablation_pbmc3k.json
    python benchmarks/vae_ablation.py --list          # the rows and their overrides

A row is LatentFlow with its defaults and the overrides in :data:`ROWS` (constructor options, and
``train()`` options such as ``max_steps`` for the VAE and ``flow_steps``). Every (row, seed) runs in its
own child process (:func:`bench_common.run_grid`), so CPU seconds and peak RSS (``ru_maxrss``) are its
own; split seed 0 for every row, the model seed varies. Each run is scored twice: per condition (the
protocol's average over conditions) and over the whole population (``condition_key=None``: what a user
who generates a whole dataset sees, proportions included).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import time
from pathlib import Path

from bench_common import DATASETS, cpu_seconds, grid_main, grid_table

#: row -> (LatentFlow constructor overrides, train() overrides)
ROWS: dict[str, tuple[dict, dict]] = {
    "default": ({}, {}),
    # latent size against the VAE budget
    "lat20": ({"vae": {"n_latent": 20}}, {}),
    "lat20_vae2x": ({"vae": {"n_latent": 20}}, {"max_steps": 12000}),
    "vae2x": ({}, {"max_steps": 12000}),
    "vae_half": ({}, {"max_steps": 3000}),
    # encoder / decoder width and depth, normalisation
    "wide256": ({"vae": {"n_hidden": 256}}, {}),
    "deep2": ({"vae": {"n_layers": 2}}, {}),
    "norm_batch": ({"vae": {"norm": "batch"}}, {}),
    # KL weight and warm-up
    "kl0.1": ({"vae": {"kl_weight": 0.1}}, {}),
    "kl_warm0.25": ({"vae": {"kl_warmup_fraction": 0.25}}, {}),
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
}


def run_one(args, row: str, seed: int) -> dict:
    """Train the row's LatentFlow on the seed-0 split, generate the test cells, score twice."""
    import torch

    from exprflow.data import read_adata
    from exprflow.experiment import split_adata
    from exprflow.metrics import evaluate
    from exprflow.models import LatentFlow

    torch.set_num_threads(args.threads)
    model_kwargs, train_kwargs = ROWS[row]
    path, key = DATASETS[args.dataset]
    train, test = split_adata(read_adata(path), None, key, 0)
    c0, w0 = cpu_seconds(), time.perf_counter()
    model = LatentFlow(train, condition_key=key, **model_kwargs)
    model.train(seed=seed, progress_bar=False, **train_kwargs)
    train_wall, train_cpu = time.perf_counter() - w0, cpu_seconds() - c0
    request = {k: int(v) for k, v in test.obs[key].astype(str).value_counts().items() if v > 0}
    generated = model.generate(conditions=request, seed=seed)
    per_condition = evaluate(test, generated, train, condition_key=key, seed=seed)
    population = evaluate(test, generated, train, condition_key=None, seed=seed)
    return {"row": row, "seed": seed, "model_kwargs": model_kwargs, "train_kwargs": train_kwargs,
            "train_wall_s": train_wall, "train_cpu_s": train_cpu, "torch_threads": torch.get_num_threads(),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "loadavg_1m_end": _loadavg(), "metrics": per_condition, "population": population}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="pbmc3k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--rows", nargs="+", default=["default"], choices=sorted(ROWS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table", type=Path, nargs="+", help="print the merged table of saved results and exit")
    parser.add_argument("--list", action="store_true", help="print the rows and exit")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    if args.list:
        for name, (model_kwargs, train_kwargs) in ROWS.items():
            print(f"{name}: LatentFlow(**{model_kwargs}).train(**{train_kwargs})")  # noqa: T201
        return
    result = {"dataset": args.dataset, "seeds": args.seeds, "torch_threads": args.threads}
    grid_main(__file__, args, run_one, markdown, result, ["--threads", str(args.threads)])


if __name__ == "__main__":
    main()
