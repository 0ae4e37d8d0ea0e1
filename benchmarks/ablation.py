"""One StateFlow configuration on PBMC3k (seed-0 split), scored with the protocol: the ablation rows.

Usage::

    python benchmarks/ablation.py --model-kwargs '{"coupling": "ot"}' --max-steps 2000 \
        [--count-method stochastic_round poisson round] [--solver euler --n-steps 16]

Prints one line per count-decoding method: ratios to the floor, c2st_knn, label accuracy, per-gene
variance correlation, dcr, train wall and CPU seconds, sampling cells/s.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import resource
import time

import torch

from exprflow.datasets import pbmc3k
from exprflow.experiment import split_adata
from exprflow.metrics import evaluate
from exprflow.models import StateFlow

#: the smoke configuration of ``python -m benchmarks ablation --smoke`` (seconds; ``{tmp}``: a temporary folder)
SMOKE_ARGS = ["--max-steps", "3"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-kwargs", default="{}", help="JSON dict of StateFlow options")
    p.add_argument("--max-steps", type=int, default=2000)
    p.add_argument("--count-method", nargs="+", default=["stochastic_round"])
    p.add_argument("--solver", default="euler")
    p.add_argument("--n-steps", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    train, test = split_adata(pbmc3k(), None, "cell_type", 0)
    torch.manual_seed(args.seed)
    model = StateFlow(train, condition_key="cell_type", **json.loads(args.model_kwargs))
    u0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    model.train(max_steps=args.max_steps, seed=args.seed, progress_bar=False)
    u1 = resource.getrusage(resource.RUSAGE_SELF)
    train_wall, train_cpu = time.perf_counter() - w0, (u1.ru_utime + u1.ru_stime) - (u0.ru_utime + u0.ru_stime)
    request = {k: int(v) for k, v in test.obs["cell_type"].astype(str).value_counts().items()}
    for method in args.count_method:
        model.config = dataclasses.replace(model.config, count_method=method)
        w0 = time.perf_counter()
        gen = model.generate(conditions=request, n_steps=args.n_steps, solver=args.solver, seed=args.seed)
        rate = gen.n_obs / (time.perf_counter() - w0)
        r = evaluate(test, gen, train, condition_key="cell_type", seed=args.seed)
        m = r["metrics"]
        ratios = {k: round(v, 2) for k, v in r["ratio_to_floor"].items() if v is not None}
        logging.warning(
            "%s steps=%d decode=%s | %s | c2st_knn %.3f label_acc %.3f pearson_var %.3f dcr %.3f | "
            "train %.0f s wall, %.0f CPU-s (%d threads) | %.0f cells/s",
            args.model_kwargs, args.max_steps, method, ratios, m["c2st_knn"], m["label_accuracy"],
            m["pearson_var"], m["dcr"], train_wall, train_cpu, torch.get_num_threads(), rate,
        )


if __name__ == "__main__":
    main()
