"""One LatentFlow configuration, several ways to sample it, and its autoencoder ceiling (one seed).

Usage::

    python benchmarks/latent_variants.py --dataset pbmc3k --config '{"vae": {"norm": "batch"}}' --threads 1

Trains LatentFlow (split seed 0, model seed 0) with the given constructor options, then scores with the
EVALUATION.md protocol: generation with Euler 16, Heun 16, Heun 16 + guidance 1.5, decoder means
instead of sampled counts, and two reconstructions of the TEST cells (decoder at their encoder means
with their true library sizes; with library sizes drawn from a log-normal instead). The
reconstructions say how much of the error is the autoencoder's and how much the latent flow's.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import anndata as ad
import numpy as np
import scipy.sparse as sp
import torch

from bench_common import DATASETS, cpu_seconds

KEYS = ["c2st_knn", "dcr", "pearson_zero_frac", "pearson_var", "label_accuracy"]


def _row(name: str, report: dict) -> dict:
    row = {"variant": name, **{k: round(v, 3) for k, v in report["ratio_to_floor"].items()}}
    row.update({k: round(report["metrics"][k], 3) for k in KEYS if report["metrics"].get(k) is not None})
    return row


def main() -> None:
    from exprflow.data import read_adata
    from exprflow.experiment import split_adata
    from exprflow.metrics import evaluate
    from exprflow.models import LatentFlow

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="pbmc3k")
    parser.add_argument("--config", default="{}", help="LatentFlow options as JSON")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    path, key = DATASETS[args.dataset]
    train, test = split_adata(read_adata(path), None, key, 0)
    torch.manual_seed(0)
    c0, w0 = cpu_seconds(), time.perf_counter()
    model = LatentFlow(train, condition_key=key, **json.loads(args.config)).train(progress_bar=False)
    logging.warning("config %s: train %.0f s wall, %.0f CPU-s, %d torch threads", args.config,
                    time.perf_counter() - w0, cpu_seconds() - c0, torch.get_num_threads())
    request = {str(k): int(v) for k, v in test.obs[key].astype(str).value_counts().items() if v > 0}
    variants = [("euler 16", {"solver": "euler"}), ("heun 16", {"solver": "heun"}),
                ("heun 16, guidance 1.5", {"solver": "heun", "guidance": 1.5}),
                ("heun 16, decoder means", {"solver": "heun", "decode": "mean"})]
    rows = []
    for name, kw in variants:
        rows.append(_row(name, evaluate(test, model.generate(conditions=request, seed=0, **kw), train,
                                        condition_key=key)))
    z = model.get_latent_representation(test)
    lib = np.asarray(test.X.sum(1)).ravel()
    rng = np.random.default_rng(0)
    for name, lib_used in [("reconstruct test (true library)", lib),
                           ("reconstruct test (log-normal library)",
                            np.exp(rng.normal(np.log(lib).mean(), np.log(lib).std(), len(lib))))]:
        counts = model.decode(z, lib_used, sample=True, seed=0).astype(np.int32)
        fake = ad.AnnData(sp.csr_matrix(counts), obs=test.obs[[key]].copy(), var=test.var[[]].copy())
        rows.append(_row(name, evaluate(test, fake, train, condition_key=key)))
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    logging.warning("\n%s", "\n".join(lines))


if __name__ == "__main__":
    main()
