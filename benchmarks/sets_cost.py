"""Cost of the gene-set encoders against the number of detected genes, on real cells (issue 5).

Usage::

    python benchmarks/sets_cost.py --out benchmarks/results/sets_cost.json
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

from bench_common import SHARED, status_mb

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
            log1p = counts.copy()
            log1p.data = np.log1p(log1p.data / np.repeat(np.asarray(counts.sum(1)).ravel(), np.diff(counts.indptr))
                                  * 1e4).astype(np.float32)
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
    fig.suptitle(f"Cell-embedding cost, batch {result['batch_size']}, width {result['hidden']}, 1 torch thread")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


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
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # "dataset,encoder"
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    if args.table:
        print(table(json.loads(args.table.read_text())))  # noqa: T201 (a script's output)
        return
    if args.plot:
        plot(json.loads(args.plot[0].read_text()), args.plot[1])
        return
    if args.worker:
        dataset, encoder = args.worker.split(",")
        print(json.dumps(worker(dataset, encoder, args.hidden, args.batch_size, args.repeats)))  # noqa: T201
        return
    from exprflow.io import write_text_atomic

    result = {"torch_threads": 1, "hidden": args.hidden, "batch_size": args.batch_size, "repeats": args.repeats,
              "quantiles": QUANTILES, "rows": []}
    for dataset in args.datasets:
        for encoder in args.encoders:
            cmd = [sys.executable, __file__, "--worker", f"{dataset},{encoder}", "--hidden", str(args.hidden),
                   "--batch-size", str(args.batch_size), "--repeats", str(args.repeats)]
            # large blocks through mmap, so freed tensors leave the RSS and the peak measures live memory
            env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                logging.warning("%s %s failed:\n%s", dataset, encoder, proc.stderr[-3000:])
                continue
            result["rows"] += json.loads(proc.stdout.strip().splitlines()[-1])
            if args.out is not None:
                write_text_atomic(json.dumps(result, indent=2), args.out)
    logging.warning("\n%s", table(result))


if __name__ == "__main__":
    main()
