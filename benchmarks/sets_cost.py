"""Cost of the gene-set encoders against the number of detected genes, on real cells (issue 5).

Usage::

    python benchmarks/sets_cost.py --out benchmarks/results/sets_cost.json
    python benchmarks/sets_cost.py --flow-step pbmc3k kang2018_ifnb --out benchmarks/results/sets_step_cost.json
    python benchmarks/sets_cost.py --table benchmarks/results/sets_cost.json
    python benchmarks/sets_cost.py --plot benchmarks/results/sets_cost.json benchmarks/figures/sets_cost.png

For worm_neuron_cao2017 (13,488 genes, very sparse) and mouse_bladder_han2018 (20,670 genes), cells are
sorted by their number of detected genes and a batch of ``--batch-size`` consecutive cells is taken at
each of several quantiles. Every encoder computes the pooled cell embedding of each batch (no gradient,
the use as an encoder; t = 1): DeepSets through the exact sparse path (``embed_sparse``, O(G + detected))
and the dense one (``embed``, O(B x G)), the Set Transformer (ISAB), scGPT value bins (ISAB) and
Geneformer rank tokens (detected genes only, top 2,048), all at the same width; the MLP's forward pass
is the reference. Time: median of ``--repeats`` calls after one warm-up. Memory: the peak RSS above the
RSS before the call (Linux ``/proc/self/clear_refs`` resets the peak before each batch; the worker runs
with ``MALLOC_MMAP_THRESHOLD_=65536`` so freed tensors leave the RSS). Each (dataset, encoder) runs in its
own process, one torch thread.

Flow-step mode (``--flow-step DATASET ...``): the cost of each backbone as the velocity network of the
state-vector flow at the parameter counts of ``benchmarks/sets.py`` (``--params``, matched over the same
width grid): one training step on real cells (velocity, squared error, backward,
Adam; median of ``--repeats`` after a warm-up) and the generation cost per cell (16 Euler steps in the
backbone's own generation chunk), with the peak RSS above baseline of the step. This is what the
quality grid would cost on a dataset, measured without running it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench_common import SHARED, save_figure, status_mb

DATASETS = {"worm_neuron_cao2017": SHARED / "worm_neuron_cao2017.h5ad",
            "mouse_bladder_han2018": SHARED / "mouse_bladder_han2018.h5ad"}
ENCODERS = ["deepsets_sparse", "deepsets_dense", "set_transformer", "value_bins", "rank_tokens", "mlp"]
QUANTILES = [0.02, 0.25, 0.5, 0.75, 0.98]
KWARGS = {
    "deepsets": {"depth": 2, "phi_depth": 2},
    "set_transformer": {"depth": 2, "heads": 2, "n_inducing": 16},
    "value_bins": {"depth": 2, "heads": 2, "attention": "isab", "n_inducing": 16},
    "rank_tokens": {"depth": 2, "heads": 2, "max_tokens": 2048},
    "mlp": {"depth": 3},
}


def batches(X, batch_size: int) -> list[np.ndarray]:
    """Rows of ``batch_size`` consecutive cells in the detected-genes order, one batch per quantile."""
    detected = np.diff(X.indptr)
    order = np.argsort(detected, kind="stable")
    out = []
    for q in QUANTILES:
        start = int(np.clip(round(q * len(order)) - batch_size // 2, 0, len(order) - batch_size))
        out.append(np.sort(order[start : start + batch_size]))
    return out


def worker(dataset: str, encoder: str, hidden: int, batch_size: int, repeats: int) -> list[dict]:
    """Time and peak memory of one encoder on every quantile batch of one dataset (in this process)."""
    import scipy.sparse as sp
    import torch

    from exprflow.backbones import BACKBONES
    from exprflow.backbones.base import GeneContext
    from exprflow.data import read_adata
    from exprflow.representations import StateVector
    from exprflow.representations.tokens import normalise_total

    torch.set_num_threads(1)
    adata = read_adata(DATASETS[dataset])
    X = sp.csr_matrix(adata.X, dtype=np.float32)
    X = X[np.diff(X.indptr) > 0]
    rep = StateVector().fit(X)
    name = encoder.split("_")[0] if encoder.startswith("deepsets") else encoder
    model = BACKBONES.get(name)(dim=X.shape[1], n_conditions=0, hidden=hidden, **KWARGS[name]).eval()
    if hasattr(model, "setup_genes"):
        model.setup_genes(GeneContext(list(map(str, adata.var_names)), adata.var, X, rep.encode,
                                      log1p_mean=rep.mean, log1p_std=rep.std, target_sum=1e4))
    rows = []
    for idx in batches(X, batch_size):
        counts = X[idx]
        if encoder == "deepsets_sparse":
            log1p = normalise_total(counts).log1p().astype(np.float32)  # sparse log1p(counts / library * 1e4)
            call = lambda v=log1p: model.embed_sparse(v)  # noqa: E731
        else:
            x = rep.encode(counts)
            call = (lambda v=x: model(v, 1.0)) if encoder == "mlp" else (lambda v=x: model.embed(v))
        with torch.no_grad():
            open("/proc/self/clear_refs", "w").write("5")  # reset the peak RSS (VmHWM) to the current RSS
            before = status_mb("VmRSS")
            call()
            peak = status_mb("VmHWM") - before
            walls = []
            for _ in range(repeats):
                start = time.perf_counter()
                call()
                walls.append(time.perf_counter() - start)
        rows.append({"dataset": dataset, "encoder": encoder, "genes": X.shape[1], "batch": len(idx),
                     "detected_mean": float(np.diff(counts.indptr).mean()),
                     "ms_per_batch": 1000 * float(np.median(walls)), "peak_mb": peak})
        logging.warning("%s", rows[-1])
    return rows


def flow_step_worker(dataset: str, row: str, params: int, batch_size: int, repeats: int) -> dict:
    """Training-step and generation cost of one backbone at matched parameters (in this process)."""
    import torch

    from bench_common import DATASETS as GRID_DATASETS
    from exprflow.backbones import BACKBONES
    from exprflow.backbones.base import GeneContext
    from exprflow.data import read_adata
    from exprflow.representations import StateVector
    from sets import BASE_KWARGS, WIDTHS, n_parameters

    torch.set_num_threads(1)
    torch.manual_seed(0)
    path, key = GRID_DATASETS[dataset]
    adata = read_adata(path)
    X = adata.X.tocsr()
    keep = np.diff(X.indptr) > 0
    X, codes = X[keep], adata.obs[key].astype("category").cat.codes.to_numpy()[keep]
    n_cond = int(codes.max()) + 1
    G = X.shape[1]
    kwargs = dict(BASE_KWARGS[row])
    width = min(WIDTHS,
                key=lambda w: abs(n_parameters(row, G, n_cond, {**kwargs, "hidden": w}) - params))
    kwargs["hidden"] = width
    if row == "rank_tokens":
        kwargs["max_tokens"] = 512  # as in the quality grid
    rep = StateVector().fit(X)
    model = BACKBONES.get(row)(dim=G, n_conditions=n_cond, **kwargs)
    if hasattr(model, "setup_genes"):
        model.setup_genes(GeneContext(list(map(str, adata.var_names)), adata.var, X, rep.encode,
                                      log1p_mean=rep.mean, log1p_std=rep.std, target_sum=1e4))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    idx = rng.choice(X.shape[0], batch_size, replace=False)
    x1, cond = rep.encode(X[idx]), torch.as_tensor(codes[idx], dtype=torch.long)

    def step():
        x0, t = torch.randn_like(x1), torch.rand(batch_size)
        xt = (1 - t[:, None]) * x0 + t[:, None] * x1
        loss = (model(xt, t, cond) - (x1 - x0)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    open("/proc/self/clear_refs", "w").write("5")
    before = status_mb("VmRSS")
    walls = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        walls.append(time.perf_counter() - start)
    peak = status_mb("VmHWM") - before
    chunk = min(int(getattr(model, "generate_batch_size", 256)), 256)
    with torch.no_grad():
        xg, cg = torch.randn(chunk, G), torch.zeros(chunk, dtype=torch.long)
        model(xg, 0.5, cg)  # warm-up
        start = time.perf_counter()
        for k in range(16):
            xg = xg + model(xg, k / 16, cg) / 16
        gen = time.perf_counter() - start
    result = {"dataset": dataset, "row": row, "genes": G, "batch": batch_size, "backbone_kwargs": kwargs,
              "n_parameters": sum(p.numel() for p in model.parameters()), "step_s": float(np.median(walls)),
              "step_ms_per_cell": 1000 * float(np.median(walls)) / batch_size, "step_peak_mb": peak,
              "generate_ms_per_cell": 1000 * gen / chunk, "generate_chunk": chunk}
    logging.warning("%s", result)
    return result


def flow_step_table(result: dict) -> str:
    """A row per backbone, a column group per dataset."""
    lines = [f"torch threads 1, batch {result['batch_size']}, target parameters {result['params']:,}", ""]
    for dataset in dict.fromkeys(r["dataset"] for r in result["rows"]):
        rows = [r for r in result["rows"] if r["dataset"] == dataset]
        lines += [f"{dataset} ({rows[0]['genes']:,} genes)", "",
                  "| backbone | width | parameters | s per training step | peak MB (step) | ms per generated cell "
                  "(16 Euler steps) |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['row']} | {r['backbone_kwargs']['hidden']} | {r['n_parameters']:,} | {r['step_s']:.3f} | "
                  f"{r['step_peak_mb']:.0f} | {r['generate_ms_per_cell']:.2f} |" for r in rows]
        lines.append("")
    return "\n".join(lines)


def table(result: dict) -> str:
    """One markdown table per dataset: a row per quantile batch, ms / MB per encoder."""
    out = [f"torch threads {result['torch_threads']}, batch {result['batch_size']}, width {result['hidden']}"]
    for dataset in DATASETS:
        rows = [r for r in result["rows"] if r["dataset"] == dataset]
        if not rows:
            continue
        encoders = list(dict.fromkeys(r["encoder"] for r in rows))
        out += ["", f"{dataset} ({rows[0]['genes']:,} genes): ms per batch / peak MB above baseline", "",
                "| detected genes (mean) | " + " | ".join(encoders) + " |", "|---|" + "---|" * len(encoders)]
        for det in sorted({r["detected_mean"] for r in rows}):
            cell = {r["encoder"]: r for r in rows if r["detected_mean"] == det}
            out.append(f"| {det:,.0f} | " + " | ".join(
                f"{cell[e]['ms_per_batch']:.1f} / {cell[e]['peak_mb']:.0f}" if e in cell else "n/a" for e in encoders)
                + " |")
    return "\n".join(out)


def plot(result: dict, path: Path) -> None:
    """Time per batch against detected genes (log-log), one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(DATASETS), figsize=(11, 4))
    for ax, dataset in zip(axes, DATASETS):
        rows = [r for r in result["rows"] if r["dataset"] == dataset]
        for encoder in dict.fromkeys(r["encoder"] for r in rows):
            pts = sorted((r["detected_mean"], r["ms_per_batch"]) for r in rows if r["encoder"] == encoder)
            ax.plot(*zip(*pts), marker="o", label=encoder)
        ax.set(xscale="log", yscale="log", xlabel="detected genes per cell (batch mean)", ylabel="ms per batch",
               title=f"{dataset} ({rows[0]['genes']:,} genes)" if rows else dataset)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    save_figure(fig, path, f"Cell-embedding cost, batch {result['batch_size']}, width {result['hidden']}, 1 torch thread")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--encoders", nargs="+", default=ENCODERS, choices=ENCODERS)
    parser.add_argument("--hidden", type=int, default=32, help="width of every encoder")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table", type=Path, help="print the tables of a saved result and exit")
    parser.add_argument("--plot", type=Path, nargs=2, metavar=("RESULT", "PNG"), help="draw the figure and exit")
    parser.add_argument("--flow-step", nargs="+", metavar="DATASET", choices=["pbmc3k", "kang2018_ifnb",
                        "mouse_bladder_han2018"], help="flow-step mode on these datasets (see the docstring)")
    parser.add_argument("--params", type=int, default=150_000, help="--flow-step: target parameter count")
    parser.add_argument("--rows", nargs="+", default=["deepsets", "set_transformer", "rank_tokens", "value_bins", "mlp"],
                        choices=["deepsets", "set_transformer", "rank_tokens", "value_bins", "mlp"],
                        help="--flow-step: the backbones")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # "dataset,encoder"
    parser.add_argument("--step-worker", help=argparse.SUPPRESS)  # "dataset,row"
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    if args.table:
        saved = json.loads(args.table.read_text())
        print(flow_step_table(saved) if saved.get("mode") == "flow_step" else table(saved))  # noqa: T201
        return
    if args.plot:
        plot(json.loads(args.plot[0].read_text()), args.plot[1])
        return
    if args.worker:
        dataset, encoder = args.worker.split(",")
        print(json.dumps(worker(dataset, encoder, args.hidden, args.batch_size, args.repeats)))  # noqa: T201
        return
    if args.step_worker:
        dataset, row = args.step_worker.split(",")
        print(json.dumps([flow_step_worker(dataset, row, args.params, args.batch_size, args.repeats)]))  # noqa: T201
        return
    common = ["--batch-size", str(args.batch_size), "--repeats", str(args.repeats)]
    if args.flow_step:
        result = {"mode": "flow_step", "params": args.params, "batch_size": args.batch_size, "rows": []}
        jobs = [(["--step-worker", f"{d},{r}", "--params", str(args.params)], (d, r))
                for d in args.flow_step for r in args.rows]
        _run_workers(jobs, common, result, args.out)
        logging.warning("\n%s", flow_step_table(result))
        return
    result = {"torch_threads": 1, "hidden": args.hidden, "batch_size": args.batch_size, "repeats": args.repeats,
              "quantiles": QUANTILES, "rows": []}
    jobs = [(["--worker", f"{d},{e}", "--hidden", str(args.hidden)], (d, e))
            for d in args.datasets for e in args.encoders]
    _run_workers(jobs, common, result, args.out)
    logging.warning("\n%s", table(result))


def _run_workers(jobs: list[tuple[list[str], tuple[str, str]]], common: list[str], result: dict,
                 out: Path | None) -> None:
    """Each job in its own process (one torch thread); its JSON rows join ``result["rows"]``, saved atomically.

    A job is ``(arguments, (dataset, name))``. Rows of an existing ``out`` are kept except those the
    jobs measure again (so one encoder can be re-measured without the rest).
    """
    from exprflow.io import write_text_atomic

    if out is not None and out.exists():
        again = {label for _, label in jobs}
        result["rows"] = [r for r in json.loads(out.read_text())["rows"]
                          if (r["dataset"], r.get("row", r.get("encoder"))) not in again]
    # large blocks through mmap, so freed tensors leave the RSS and the peak measures live memory
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    for job_args, label in jobs:
        proc = subprocess.run([sys.executable, __file__, *job_args, *common], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            logging.warning("%s failed:\n%s", " ".join(label), proc.stderr[-3000:])
            continue
        result["rows"] += json.loads(proc.stdout.strip().splitlines()[-1])
        if out is not None:
            write_text_atomic(json.dumps(result, indent=2), out)


if __name__ == "__main__":
    main()
