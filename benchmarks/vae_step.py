"""Cost of one count-VAE training step per likelihood (forward + backward + AdamW), on real counts.

Usage::

    python benchmarks/vae_step.py --dataset kang2018_ifnb --batch-size 128 --repeats 10

Prints the median wall and CPU seconds per step for nb, zinb and poisson, measured side by side.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import torch

from bench_common import DATASETS, cpu_seconds

#: the smoke configuration of ``python -m benchmarks vae_step --smoke`` (seconds; ``{tmp}``: a temporary folder)
SMOKE_ARGS = ["--dataset", "pbmc3k", "--batch-size", "16", "--repeats", "1"]


def main() -> None:
    from exprflow.data import read_adata
    from exprflow.distributions import LIKELIHOODS
    from exprflow.representations.vae import CountVAE, VAEConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="kang2018_ifnb")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    adata = read_adata(DATASETS[args.dataset][0])
    x = torch.from_numpy(adata.X[: args.batch_size].toarray().astype(np.float32))
    lines = [f"{args.dataset}: batch {args.batch_size} x {x.shape[1]} genes, torch threads {torch.get_num_threads()}",
             "", "| likelihood | median wall s / step | median CPU s / step |", "|---|---|---|"]
    for name in LIKELIHOODS.names():
        torch.manual_seed(0)
        model = CountVAE(x.shape[1], VAEConfig(likelihood=name))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        walls, cpus = [], []
        for i in range(args.repeats + 1):
            c0, w0 = cpu_seconds(), time.perf_counter()
            loss, _ = model.loss(x, 1.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i:  # the first step warms up allocators
                walls.append(time.perf_counter() - w0)
                cpus.append(cpu_seconds() - c0)
        lines.append(f"| {name} | {np.median(walls):.3f} | {np.median(cpus):.3f} |")
    logging.warning("\n".join(lines))


if __name__ == "__main__":
    main()
