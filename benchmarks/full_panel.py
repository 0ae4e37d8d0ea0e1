"""LatentFlow's defaults on a full gene panel: default step budget, time per step, peak memory, generation.

Usage::

    python benchmarks/full_panel.py --dataset mouse_bladder_han2018 --out benchmarks/results/full_panel_bladder.json
    python benchmarks/full_panel.py --dataset mouse_bladder_han2018 --max-steps 300 --flow-steps 1000 --out ...
    python benchmarks/full_panel.py --synthetic-genes 35000 --cells 2000 --max-steps 50 --flow-steps 200 --out ...

What ``exprflow fit`` does with its defaults (LatentFlow on every cell, conditioned on the dataset's
label), then ``generate`` of as many cells as were trained on. With ``--max-steps`` / ``--flow-steps``
the budgets are cut and the default budget's training time is EXTRAPOLATED from the measured time per
step of each phase (said so in the result: ``*_extrapolated``). ``--synthetic-genes`` builds a random
negative-binomial count matrix (``--cells`` cells, 5 labels) to test panels larger than any shared
dataset. Peak RSS is ``VmHWM`` of this process (the whole run: loading, training, generation).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from bench_common import DATASETS, cpu_seconds, status_mb


#: the harness smoke run: a small synthetic panel, a few steps (seconds)
SMOKE_ARGS = ["--synthetic-genes", "300", "--cells", "200", "--max-steps", "3", "--flow-steps", "3"]

def synthetic(n_cells: int, n_genes: int, seed: int = 0):
    """Random NB counts (gene means log-normal, 5 labels with shifted means), CSR int32."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, n_cells)
    base = rng.lognormal(-2.5, 1.5, n_genes)
    rows = []
    for lo in range(0, n_cells, 500):  # in blocks: never a dense cells x genes float64 matrix
        lab = labels[lo : lo + 500]
        shift = rng.lognormal(0, 0.5, (5, n_genes))[lab]
        mean = base * shift * rng.lognormal(0, 0.3, (len(lab), 1))
        rows.append(sp.csr_matrix(rng.negative_binomial(2, 2 / (2 + mean)).astype(np.int32)))
    obs = pd.DataFrame({"label": pd.Categorical([f"c{i}" for i in labels])}, index=[f"cell{i}" for i in range(n_cells)])
    return ad.AnnData(sp.vstack(rows).tocsr(), obs=obs, var=pd.DataFrame(index=[f"g{i}" for i in range(n_genes)])), "label"


def main() -> None:
    import torch

    from exprflow.data import read_adata
    from exprflow.io import write_text_atomic
    from exprflow.models import LatentFlow
    from exprflow.models.latent_flow import default_vae_steps

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=sorted(DATASETS))
    p.add_argument("--synthetic-genes", type=int)
    p.add_argument("--cells", type=int, default=2000, help="cells of the synthetic matrix")
    p.add_argument("--max-steps", type=int, default=None, help="VAE steps (default: the model's default)")
    p.add_argument("--flow-steps", type=int, default=4000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    w_all = time.perf_counter()
    if args.synthetic_genes:
        adata, key = synthetic(args.cells, args.synthetic_genes)
        name = f"synthetic_{args.cells}x{args.synthetic_genes}"
    else:
        path, key = DATASETS[args.dataset]
        adata, name = read_adata(path), args.dataset
    rss_loaded = status_mb("VmRSS")
    model = LatentFlow(adata, condition_key=key)
    default_steps = default_vae_steps(model.data.n_cells, len(model.var_names), 128)
    vae_steps = args.max_steps or default_steps
    c0, w0 = cpu_seconds(), time.perf_counter()
    model.train(vae_steps=vae_steps, flow_steps=args.flow_steps, progress_bar=False)
    train_cpu, train_wall = cpu_seconds() - c0, time.perf_counter() - w0
    vae_wall, flow_wall = model.vae_seconds, model.train_seconds - model.vae_seconds
    c0, w0 = cpu_seconds(), time.perf_counter()
    generated = model.generate(n_cells=model.data.n_cells, seed=0)
    gen_cpu, gen_wall = cpu_seconds() - c0, time.perf_counter() - w0
    vae_step_s, flow_step_s = vae_wall / vae_steps, flow_wall / args.flow_steps
    result = {
        "data": name, "n_cells": int(model.data.n_cells), "n_genes": len(model.var_names),
        "nnz": int(adata.X.nnz), "torch_threads": torch.get_num_threads(),
        "default_vae_steps": default_steps, "vae_steps": vae_steps, "flow_steps": args.flow_steps,
        "train_wall_s": train_wall, "train_cpu_s": train_cpu, "vae_wall_s": vae_wall, "flow_wall_s": flow_wall,
        "vae_step_wall_s": vae_step_s, "flow_step_wall_s": flow_step_s,
        "default_train_wall_s_extrapolated": vae_step_s * default_steps + flow_step_s * 4000,
        "default_train_cpu_s_extrapolated": train_cpu * (vae_step_s * default_steps + flow_step_s * 4000) / train_wall,
        "generate_wall_s": gen_wall, "generate_cpu_s": gen_cpu, "generated_nnz": int(generated.X.nnz),
        "generated_finite": bool(np.isfinite(generated.X.data).all()),
        "rss_after_load_mb": rss_loaded, "peak_rss_mb": status_mb("VmHWM"), "wall_s": time.perf_counter() - w_all,
    }
    with open("/proc/loadavg") as f:
        result["loadavg"] = f.read().split()[:3]
    logging.warning(json.dumps(result, indent=1))
    if args.out:
        write_text_atomic(json.dumps(result, indent=2), args.out)


if __name__ == "__main__":
    main()
