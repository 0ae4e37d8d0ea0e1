"""Pathways as tokens (issue 7): real gene sets against degree-matched random sets through the identical
model, and the plain MLP, as flow backbones on PBMC3k (human symbols), 3 seeds.

Usage::

    OMP_NUM_THREADS=1 nice -n 10 python -m benchmarks pathways --seeds 0 1 2 --jobs 3
    python -m benchmarks pathways --table benchmarks/results/pathways_pbmc3k_s{0,1,2}.json   # older results
    python -m benchmarks pathways --rows scores      # the set-score probe (no network)

Rows: ``hallmark`` (MSigDB Hallmark, 50 sets), ``go_bp`` (GO Biological Process 2023, 5,407 sets; ISAB
over its ~500 kept tokens), each with its ``*_random`` control (same set sizes, members drawn uniformly
from the covered genes, ``control_seed`` = the run's seed, so each seed draws other random sets), and
``mlp`` (StateFlow's default backbone, similar parameter count). Every (row, seed) runs in its own child
process (``benchmarks/harness.py``): the EVALUATION.md split, the same steps and batch size for all rows,
generation of the test split's cells, the protocol metrics (ratios to the floor), and a linear probe of
cell type from the frozen backbone's pooled embedding (``benchmarks/sets.py``'s probe, with PCA-50 as
reference).

Row ``scores`` asks the same question without a network (seconds of CPU): a linear probe of cell type from
set scores, the mean standardised log1p expression of each set's genes (membership / size @ x), for the
real sets and for degree-matched random sets (one random draw per seed; ``uniform`` and ``swap`` controls).
The smoke configuration maps small random gene sets of the smoke genes instead of the GMT files.
"""

from __future__ import annotations

import resource
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench_common import DATASETS, cpu_seconds, grid_table, load, shared
from harness import Benchmark, script_main
from sets import probes

GMT = {"hallmark": "genesets/h.all.v7.5.1.symbols.gmt", "go_bp": "genesets/GO_Biological_Process_2023.gmt"}
SMOKE_SETS = {"hallmark": 8, "go_bp": 40}  # random sets of the smoke configuration
PATHWAY = {"hidden": 16, "depth": 2, "heads": 2, "time_dim": 16, "min_set_size": 10}
ATTENTION = {"hallmark": {"attention": "sab"}, "go_bp": {"attention": "isab", "n_inducing": 32}}
ROWS = ["hallmark", "hallmark_random", "go_bp", "go_bp_random", "mlp"]


def gmt_files(smoke: bool, var_names, folder: str) -> dict[str, Path]:
    """The GMT file of each collection: the shared data's, or (smoke) random sets of ``var_names`` in ``folder``."""
    if not smoke:
        return {c: shared(name) for c, name in GMT.items()}
    rng, files = np.random.default_rng(0), {}
    for collection, n_sets in SMOKE_SETS.items():
        lines = [f"SET_{k}\tsmoke\t" + "\t".join(rng.choice(list(var_names), 12 + k % 8, replace=False))
                 for k in range(n_sets)]
        files[collection] = Path(folder) / f"{collection}.gmt"
        files[collection].write_text("\n".join(lines) + "\n")
    return files


def row_spec(row: str, seed: int, gmt: dict[str, Path]) -> tuple[str, dict]:
    """``(model name, model kwargs)`` of a row; random controls draw their sets with ``seed``."""
    if row == "mlp":
        return "state", {"backbone": "mlp", "backbone_kwargs": {"hidden": 16, "depth": 3, "time_dim": 16}}
    collection = row.removesuffix("_random")
    kwargs = {**PATHWAY, **ATTENTION[collection], "gene_sets": str(gmt[collection])}
    if row.endswith("_random"):
        kwargs.update(control="random", control_seed=seed)
    return "pathway", {"backbone_kwargs": kwargs}


def run_one(row: str, dataset: str, seed: int, smoke: bool, max_steps: int = 300, batch_size: int = 32) -> dict:
    """One (row, seed) in this process: the set-score probe (``scores``) or :func:`train_row`."""
    adata = load(dataset, smoke)
    with tempfile.TemporaryDirectory() as folder:
        gmt = gmt_files(smoke, adata.var_names, folder)
        if row == "scores":
            return set_scores(adata, DATASETS[dataset][1], [seed], gmt)
        return train_row(adata, DATASETS[dataset][1], row, seed, max_steps, batch_size, gmt)


def train_row(adata, key: str, row: str, seed: int, max_steps: int, batch_size: int, gmt: dict[str, Path]) -> dict:
    """One (row, seed): train, generate, evaluate, probe (in this process)."""
    import torch

    from exprflow.experiment import ExperimentSpec, run_experiment, split_adata
    from exprflow.io import load_any_model
    from exprflow.representations.genesets import GeneSets, read_gmt

    torch.set_num_threads(1)
    train, test = split_adata(adata, None, key, 0)
    model_name, model_kwargs = row_spec(row, seed, gmt)
    spec = ExperimentSpec(model=model_name, model_kwargs=model_kwargs, max_steps=max_steps,
                          batch_size=batch_size, seed=seed)
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
    result.update(max_steps=max_steps, batch_size=batch_size)
    return result


def set_scores(adata, key: str, seeds: list[int], gmt: dict[str, Path]) -> dict:
    """Probe of cell type from per-set mean expression: real sets vs degree-matched random sets."""
    import time

    from exprflow.experiment import split_adata
    from exprflow.representations import StateVector, StateVectorConfig
    from exprflow.representations.genesets import GeneSets, read_gmt
    from sets import linear_probe

    start, cpu = time.perf_counter(), cpu_seconds()
    train, test = split_adata(adata, None, key, 0)
    rep = StateVector(StateVectorConfig()).fit(train.X)
    x_train, x_test = rep.encode(train.X).numpy(), rep.encode(test.X).numpy()
    y_train, y_test = train.obs[key].astype(str).to_numpy(), test.obs[key].astype(str).to_numpy()
    rows = []
    for collection, path in gmt.items():
        real = GeneSets.map(read_gmt(path), adata.var_names, min_size=PATHWAY["min_set_size"], max_sets=1024)
        variants = [("real", None, real)] + [(kind, seed, real.random_degree_matched(seed, kind == "swap"))
                                             for kind in ("uniform", "swap") for seed in seeds]
        for kind, seed, sets in variants:
            pool = sets.membership.multiply(1.0 / sets.sizes[:, None]).T.tocsr()  # genes x sets, 1/size
            probe = linear_probe(x_train @ pool, y_train, x_test @ pool, y_test)
            rows.append({"collection": collection, "sets": kind, "seed": seed, "n_sets": len(sets.names),
                         "n_covered": int(sets.covered.size), **probe})
    return {"seeds": seeds, "rows": rows, "wall_s": time.perf_counter() - start, "cpu_s": cpu_seconds() - cpu}


def scores_markdown(result: dict) -> str:
    """Probe accuracy / macro-F1 per collection and kind of sets (mean ± sd over random seeds).

    ``result``: one older ``--scores`` result, or the harness's result whose ``scores`` runs are merged.
    """
    from bench_common import mean_sd

    if "rows" not in result:
        runs = [r for r in result["runs"] if r["row"] == "scores"]
        result = {"dataset": result["dataset"], "rows": [x for r in runs for x in r["rows"]],
                  "cpu_s": sum(r["cpu_s"] for r in runs)}

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
    """The trained rows' table (and the set-score table when ``scores`` runs are there)."""
    if "rows" in result:  # an older --scores result
        return scores_markdown(result)
    trained = [r for r in result["runs"] if r["row"] != "scores"]
    parts = [trained_markdown({**result, "runs": trained})] if trained else []
    if len(trained) < len(result["runs"]):
        parts.append(scores_markdown(result))
    return "\n\n".join(parts)


def trained_markdown(result: dict) -> str:
    """A column per row (mean ± sd over seeds): protocol metrics, probes, gene-set tokens and costs."""
    runs = result["runs"]
    extra = [(f"probe {score} ({source})", lambda r, s=source, k=score: r["probe"][s][k])
             for source in ("embedding", "pca50") for score in ("accuracy", "macro_f1")]
    extra += [(n, lambda r, n=n: r.get(n)) for n in ("n_sets", "n_covered_by_these_sets", "n_parameters",
                                                        "train_wall_s", "train_cpu_s", "generate_cpu_s", "worker_cpu_s",
                                                        "peak_rss_mb")]
    steps, batch = result.get("max_steps"), result.get("batch_size")  # older results; else from the runs
    if steps is None:
        steps, batch = runs[0]["max_steps"], runs[0]["batch_size"]
    title = (f"dataset {result['dataset']}, seeds {result['seeds']}, torch threads {result['torch_threads']}, "
             f"{steps} steps of batch {batch}")
    return grid_table(result, rows=[r for r in ROWS if any(x["row"] == r for x in result["runs"])], extra=extra,
                      title=title)


BENCHMARK = Benchmark(
    rows={**{row: {"collection": row.removesuffix("_random"), "control": "random" if row.endswith("_random") else None}
             for row in ROWS if row != "mlp"}, "mlp": {"backbone": "mlp"}, "scores": {"probe": "set scores"}},
    datasets=("pbmc3k",), run_one=run_one, table=markdown, default_rows=tuple(ROWS),
    options={"max_steps": 300, "batch_size": 32}, smoke={"max_steps": 3, "batch_size": 8},
    smoke_rows=(*ROWS, "scores"),
)

if __name__ == "__main__":
    sys.exit(script_main(__file__))
