"""Latent-flow benchmark (issue 3): LatentFlow vs scVI prior sampling vs StateFlow, one table.

Usage::

    python benchmarks/latent.py --dataset pbmc3k --seeds 0 1 2 --out benchmarks/results/latent_pbmc3k.json
    python benchmarks/latent.py --dataset kang2018_ifnb --scvi-epochs 12 --out ...
    python benchmarks/latent.py --dataset pbmc3k --rows latent:zinb latent:poisson --seeds 0 --out ...
    python benchmarks/latent.py --table benchmarks/results/latent_pbmc3k.json    # re-print a saved table
    python benchmarks/latent.py --table RESULT.json --merge benchmarks/results/foundation_kang2018_ifnb.json=state

Rows: ``latent:<likelihood>`` (LatentFlow with its defaults and that decoder likelihood), ``scvi``
(scVI prior sampling, condition as scVI batch; needs the bench extra) and ``state`` (StateFlow with its
defaults). Every (row, seed) runs in its own child process, so its peak memory (``ru_maxrss``) is its
own; the EVALUATION.md split is seed 0 for all rows, the model seed varies. Results are written after
every run, so a cut benchmark keeps what it has.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
from pathlib import Path

from bench_common import DATASETS, grid_table, run_grid

HERE = Path(__file__).resolve().parent
def run_one(dataset: str, row: str, seed: int, scvi_epochs: int | None) -> dict:
    """Train, generate the test split's cells, evaluate (in this process)."""
    import torch

    from exprflow.data import read_adata
    from exprflow.experiment import ExperimentSpec, run_experiment, split_adata
    from exprflow.metrics import evaluate

    path, key = DATASETS[dataset]
    adata = read_adata(path)
    if row == "scvi":
        sys.path.insert(0, str(HERE))
        from baselines.scvi_prior import scvi_prior_generate

        train, test = split_adata(adata, None, key, 0)
        request = test.obs[key].astype(str).to_numpy()
        generated, info = scvi_prior_generate(train, key, request, len(request), max_epochs=scvi_epochs, seed=seed)
        metrics = evaluate(test, generated, train, condition_key=key, seed=seed)
        result = {"train_wall_s": info["train_wall_s"], "train_cpu_s": info["train_cpu_s"], "metrics": metrics,
                  "info": {k: v for k, v in info.items() if k not in ("train_wall_s", "train_cpu_s")}}
    else:
        model, _, likelihood = row.partition(":")
        kwargs = {"vae": {"likelihood": likelihood}} if model == "latent" else {}
        spec = ExperimentSpec(model=model, model_kwargs=kwargs, seed=seed)
        summary = run_experiment(adata, spec, None, condition_key=key, plots=False, progress_bar=False)
        result = {k: summary[k] for k in ("train_wall_s", "train_cpu_s", "generate_wall_s", "cells_per_s", "metrics")}
    result.update(row=row, seed=seed, torch_threads=torch.get_num_threads(),
                  peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result


def markdown(result: dict) -> str:
    """One table: a column per row (model), mean ± sd over seeds."""
    return grid_table(result, extra=[(n, lambda r, n=n: r.get(n)) for n in ("train_wall_s", "train_cpu_s", "peak_rss_mb")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="pbmc3k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", default=["latent:nb", "scvi", "state"])
    parser.add_argument("--scvi-epochs", type=int, default=None, help="scVI epochs (default: scVI's heuristic)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table", type=Path, help="re-print the table of a saved result and exit")
    parser.add_argument("--merge", nargs="+", default=[], metavar="JSON=ROW",
                        help="with --table: add the runs of another result file (e.g. foundation.py's) as ROW")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # "row,seed": run one in this process
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    if args.table:
        result = json.loads(args.table.read_text())
        for item in args.merge:
            path, row = item.rsplit("=", 1)
            result["runs"] += [{**run, "row": row} for run in json.loads(Path(path).read_text())["runs"]]
        print(markdown(result))  # noqa: T201 (a script's output)
        return
    if args.worker:
        row, seed = args.worker.rsplit(",", 1)
        print(json.dumps(run_one(args.dataset, row, int(seed), args.scvi_epochs)))  # noqa: T201 (to the parent)
        return
    result = {"dataset": args.dataset, "seeds": args.seeds, "torch_threads": None, "scvi_epochs": args.scvi_epochs}
    extra = [] if args.scvi_epochs is None else ["--scvi-epochs", str(args.scvi_epochs)]
    result = run_grid(__file__, args.dataset, args.rows, args.seeds, args.out, result, extra)
    logging.warning("\n%s", markdown(result))


if __name__ == "__main__":
    main()
