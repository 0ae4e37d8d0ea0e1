"""Cost of one count-VAE training step per likelihood (forward + backward + AdamW), on real counts.

Usage::

    python benchmarks/vae_step.py --dataset kang2018_ifnb --batch-size 128 --repeats 10
    python benchmarks/vae_step.py --dataset pbmc3k --encoder set --likelihoods nb --vary-cells --repeats 300

Prints the median wall and CPU seconds per step for nb, zinb and poisson, measured side by side, and the
process's peak RSS. ``--vary-cells`` trains on the next cells at every step (as training does) instead of
repeating the first batch: the set encoder's tensors then change size from step to step.
"""

from __future__ import annotations

import argparse
import logging
import resource
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
    parser.add_argument("--encoder", choices=["mlp", "set"], default="mlp")
    parser.add_argument("--likelihoods", nargs="+", default=None, help="default: all registered")
    parser.add_argument("--vary-cells", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    adata = read_adata(DATASETS[args.dataset][0])

    def batch(i: int) -> torch.Tensor:
        lo = (i * args.batch_size) % max(adata.n_obs - args.batch_size, 1) if args.vary_cells else 0
        return torch.from_numpy(adata.X[lo : lo + args.batch_size].toarray().astype(np.float32))

    x = batch(0)
    lines = [f"{args.dataset}: batch {args.batch_size} x {x.shape[1]} genes, {args.encoder} encoder, "
             f"torch threads {torch.get_num_threads()}",
             "", "| likelihood | median wall s / step | median CPU s / step |", "|---|---|---|"]
    for name in args.likelihoods or LIKELIHOODS.names():
        torch.manual_seed(0)
        model = CountVAE(x.shape[1], VAEConfig(likelihood=name, encoder=args.encoder))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        walls, cpus = [], []
        for i in range(args.repeats + 1):
            c0, w0 = cpu_seconds(), time.perf_counter()
            loss, _ = model.loss(batch(i) if args.vary_cells else x, 1.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i:  # the first step warms up allocators
                walls.append(time.perf_counter() - w0)
                cpus.append(cpu_seconds() - c0)
        lines.append(f"| {name} | {np.median(walls):.3f} | {np.median(cpus):.3f} |")
    lines.append(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    logging.warning("\n".join(lines))


if __name__ == "__main__":
    main()
