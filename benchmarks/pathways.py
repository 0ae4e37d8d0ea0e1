"""Pathways as tokens (issue 7): real gene sets against degree-matched random sets through the identical
model, and the plain MLP, as flow backbones on PBMC3k (human symbols), 3 seeds.

Usage::

    # one process per seed (they run side by side; each resumes from its --out)
    for s in 0 1 2; do OMP_NUM_THREADS=1 nice -n 10 python benchmarks/pathways.py --seeds $s \
        --out benchmarks/results/pathways_pbmc3k_s$s.json & done; wait
    python benchmarks/pathways.py --table benchmarks/results/pathways_pbmc3k_s{0,1,2}.json
    python benchmarks/pathways.py --scores --out benchmarks/results/pathways_scores_pbmc3k.json

Rows: ``hallmark`` (MSigDB Hallmark, 50 sets), ``go_bp`` (GO Biological Process 2023, 5,407 sets; ISAB
over its ~500 kept tokens), each with its ``*_random`` control (same set sizes, members drawn uniformly
from the covered genes, ``control_seed`` = the run's seed, so each seed draws other random sets), and
``mlp`` (StateFlow's default backbone, similar parameter count). Every (row, seed) runs in its own child
process (``bench_common.run_grid``): the EVALUATION.md split, the same steps and batch size for all rows,
generation of the test split's cells, the protocol metrics (ratios to the floor), and a linear probe of
cell type from the frozen backbone's pooled embedding (``benchmarks/sets.py``'s probe, with PCA-50 as
reference).

``--scores`` asks the same question without a network (seconds of CPU): a linear probe of cell type from
set scores, the mean standardised log1p expression of each set's genes (membership / size @ x), for the
real sets and for degree-matched random sets (3 seeds each; ``uniform`` and ``swap`` controls).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import tempfile
from pathlib import Path

from bench_common import DATASETS, SHARED, cpu_seconds, grid_main, grid_table
from sets import probes

GMT = {"hallmark": SHARED / "genesets" / "h.all.v7.5.1.symbols.gmt",
       "go_bp": SHARED / "genesets" / "GO_Biological_Process_2023.gmt"}
PATHWAY = {"hidden": 16, "depth": 2, "heads": 2, "time_dim": 16, "min_set_size": 10}
ATTENTION = {"hallmark": {"attention": "sab"}, "go_bp": {"attention": "isab", "n_inducing": 32}}
ROWS = ["hallmark", "hallmark_random", "go_bp", "go_bp_random", "mlp"]


def row_spec(row: str, seed: int) -> tuple[str, dict]:
    """``(model name, model kwargs)`` of a row; random controls draw their sets with ``seed``."""
    if row == "mlp":
        return "state", {"backbone": "mlp", "backbone_kwargs": {"hidden": 16, "depth": 3, "time_dim": 16}}
    collection = row.removesuffix("_random")
    kwargs = {**PATHWAY, **ATTENTION[collection], "gene_sets": str(GMT[collection])}
    if row.endswith("_random"):
        kwargs.update(control="random", control_seed=seed)
    return "pathway", {"backbone_kwargs": kwargs}


def run_one(args, row: str, seed: int) -> dict:
    """One (row, seed): train, generate, evaluate, probe (in this process)."""
    import torch

    from exprflow.data import read_adata
    from exprflow.experiment import ExperimentSpec, run_experiment, split_adata
    from exprflow.io import load_any_model
    from exprflow.representations.genesets import GeneSets, read_gmt

    torch.set_num_threads(1)
    path, key = DATASETS[args.dataset]
    adata = read_adata(path)
    train, test = split_adata(adata, None, key, 0)
    model_name, model_kwargs = row_spec(row, seed)
    spec = ExperimentSpec(model=model_name, model_kwargs=model_kwargs, max_steps=args.max_steps,
                          batch_size=args.batch_size, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        summary = run_experiment(adata, spec, Path(tmp) / "run", condition_key=key, plots=False, progress_bar=False)
        model = load_any_model(Path(tmp) / "run")
    result = {k: summary[k] for k in ("train_wall_s", "train_cpu_s", "generate_wall_s", "generate_cpu_s",
                                      "cells_per_s", "metrics")}
    result.update(row=row, seed=seed, model=model_name, model_kwargs=model_kwargs,
                  torch_threads=torch.get_num_threads(),
                  n_parameters=sum(p.numel() for p in model.backbone.parameters()),
                  probe=probes(model, train, test, "cell_type"),
                  peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if model_name == "pathway":
        kw = model_kwargs["backbone_kwargs"]
        report = GeneSets.map(read_gmt(kw["gene_sets"]), adata.var_names, min_size=kw["min_set_size"],
                              max_sets=1024).report
        result.update(n_sets=int(model.backbone.n_sets), coverage=report.coverage,
                      n_covered_by_these_sets=int(model.backbone.gene_index.unique().numel()))
    result["worker_cpu_s"] = cpu_seconds()  # the whole child: load, train, generate, evaluate, probe
    return result


def set_scores(args) -> dict:
    """Probe of cell type from per-set mean expression: real sets vs degree-matched random sets."""
    import time

    from exprflow.data import read_adata
    from exprflow.experiment import split_adata
    from exprflow.representations import StateVector, StateVectorConfig
    from exprflow.representations.genesets import GeneSets, read_gmt
    from sets import linear_probe

    start, cpu = time.perf_counter(), cpu_seconds()
    path, key = DATASETS[args.dataset]
    adata = read_adata(path)
    train, test = split_adata(adata, None, key, 0)
    rep = StateVector(StateVectorConfig()).fit(train.X)
    x_train, x_test = rep.encode(train.X).numpy(), rep.encode(test.X).numpy()
    y_train, y_test = train.obs[key].astype(str).to_numpy(), test.obs[key].astype(str).to_numpy()
    rows = []
    for collection, gmt in GMT.items():
        real = GeneSets.map(read_gmt(gmt), adata.var_names, min_size=PATHWAY["min_set_size"], max_sets=1024)
        variants = [("real", None, real)] + [(kind, seed, real.random_degree_matched(seed, kind == "swap"))
                                             for kind in ("uniform", "swap") for seed in args.seeds]
        for kind, seed, sets in variants:
            pool = sets.membership.multiply(1.0 / sets.sizes[:, None]).T.tocsr()  # genes x sets, 1/size
            probe = linear_probe(x_train @ pool, y_train, x_test @ pool, y_test)
            rows.append({"collection": collection, "sets": kind, "seed": seed, "n_sets": len(sets.names),
                         "n_covered": int(sets.covered.size), **probe})
    return {"dataset": args.dataset, "seeds": args.seeds, "rows": rows, "wall_s": time.perf_counter() - start,
            "cpu_s": cpu_seconds() - cpu}


def scores_markdown(result: dict) -> str:
    """Probe accuracy / macro-F1 per collection and kind of sets (mean ± sd over random seeds)."""
    from bench_common import mean_sd

    lines = [f"dataset {result['dataset']}, linear probe of cell type from set scores "
             f"({result['cpu_s']:.0f} CPU s)", "", "| collection | sets | n sets | genes covered | accuracy | macro-F1 |",
             "|---|---|---|---|---|---|"]
    for collection in GMT:
        for kind in ("real", "uniform", "swap"):
            rs = [r for r in result["rows"] if r["collection"] == collection and r["sets"] == kind]
            lines.append(f"| {collection} | {kind} | {rs[0]['n_sets']} | {mean_sd(r['n_covered'] for r in rs)} | "
                         f"{mean_sd(r['accuracy'] for r in rs)} | {mean_sd(r['macro_f1'] for r in rs)} |")
    return "\n".join(lines)


def markdown(result: dict) -> str:
    """A column per row (mean ± sd over seeds): protocol metrics, probes, gene-set tokens and costs."""
    extra = [(f"probe {score} ({source})", lambda r, s=source, k=score: r["probe"][s][k])
             for source in ("embedding", "pca50") for score in ("accuracy", "macro_f1")]
    extra += [(n, lambda r, n=n: r.get(n)) for n in ("n_sets", "n_covered_by_these_sets", "n_parameters",
                                                        "train_wall_s", "train_cpu_s", "generate_cpu_s", "worker_cpu_s",
                                                        "peak_rss_mb")]
    title = (f"dataset {result['dataset']}, seeds {result['seeds']}, torch threads {result['torch_threads']}, "
             f"{result['max_steps']} steps of batch {result['batch_size']}")
    return grid_table(result, rows=[r for r in ROWS if any(x["row"] == r for x in result["runs"])], extra=extra,
                      title=title)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["pbmc3k"], default="pbmc3k", help="human gene symbols needed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", default=ROWS, choices=ROWS)
    parser.add_argument("--max-steps", type=int, default=300, help="training steps (same for every row)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table", type=Path, nargs="+", help="print the table of saved result(s) (runs merged)")
    parser.add_argument("--scores", action="store_true", help="probe set scores (no network), real vs random")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # "row,seed": run one in this process
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    if args.scores:
        from exprflow.io import write_text_atomic

        result = set_scores(args)
        if args.out is not None:
            write_text_atomic(json.dumps(result, indent=2), args.out)
        print(scores_markdown(result))  # noqa: T201 (a script's output)
        return
    result = {"dataset": args.dataset, "seeds": args.seeds, "torch_threads": None, "max_steps": args.max_steps,
              "batch_size": args.batch_size}
    extra = ["--max-steps", str(args.max_steps), "--batch-size", str(args.batch_size)]
    grid_main(__file__, args, run_one, markdown, result, extra)


if __name__ == "__main__":
    main()
