"""DDP throughput scaling on CPU processes (issue 8): 1 vs 2 training processes (gloo), cells/s and CPU-s.

Usage::

    nice -n 10 python benchmarks/ddp_scaling.py --seeds 0 1 2 --out benchmarks/results/ddp_scaling.json
    python benchmarks/ddp_scaling.py --table benchmarks/results/ddp_scaling.json      # re-print the table
    nice -n 10 python benchmarks/ddp_scaling.py --checkpoint-cost benchmarks/results/checkpoint_cost.json

StateFlow (MLP, hidden 256, depth 3) on PBMC3k (2,638 cells x 2,000 genes, cell-type conditional), one
torch thread per process. Rows (``processes x rows per process``):

* ``1x128``: one process, batch 128 (the reference);
* ``2x128``: two DDP processes, 128 rows each (weak scaling: the global batch doubles to 256);
* ``2x64``: two DDP processes, 64 rows each (strong scaling: the global batch stays 128).

Each (row, seed) runs as its own ``python ddp_scaling.py --worker ...`` child; with two devices
Lightning relaunches that child for rank 1. Every rank times steps ``WARMUP..STEPS`` of the training
loop (wall and its own CPU seconds, ``getrusage``) and writes ``rank{r}.json``; the parent adds the
child's end-to-end wall and CPU seconds (start-up, data loading, process launch and gloo set-up
included). cells/s = timed steps x global batch / rank 0's loop wall seconds. ``process_cpu_s`` in the
JSON is ``getrusage(RUSAGE_CHILDREN)`` of the parent: rank 0 and the processes it waited for, which
need not include Lightning's rank-1 process, so it is not in the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import DATASETS, cpu_seconds, mean_sd, save_figure

HERE = Path(__file__).resolve().parent
ROWS = ["1x128", "2x128", "2x64"]
STEPS, WARMUP = 200, 20


def worker(row: str, seed: int, log_dir: Path) -> None:
    """Train one (row, seed) and write this rank's timings to ``log_dir/rank{r}.json``."""
    import lightning as L
    import torch

    from exprflow.data import read_adata
    from exprflow.models import StateFlow
    from exprflow.training.fit import fit_plan
    from exprflow.training.plans import FlowTrainingPlan

    torch.set_num_threads(1)
    devices, batch = (int(v) for v in row.split("x"))

    class LoopTimer(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch_, batch_idx) -> None:
            if trainer.global_step == WARMUP:
                self.start = (time.perf_counter(), cpu_seconds())

        def on_train_end(self, trainer, pl_module) -> None:
            wall, cpu = time.perf_counter() - self.start[0], cpu_seconds() - self.start[1]
            result = {"row": row, "seed": seed, "rank": trainer.global_rank, "world_size": trainer.world_size,
                      "timed_steps": trainer.global_step - WARMUP, "batch_per_process": batch,
                      "loop_wall_s": wall, "loop_cpu_s": cpu, "torch_threads": torch.get_num_threads()}
            (log_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(result))

    path, key = DATASETS["pbmc3k"]
    torch.manual_seed(seed)
    model = StateFlow(read_adata(path), condition_key=key, backbone_kwargs={"hidden": 256, "depth": 3})
    model.plan = FlowTrainingPlan(model.backbone, model.objective, model.representation.encode, model.config.flow_optim, 0)
    fit_plan(model.plan, model.data.X, model.data.conditions, batch_size=batch, max_epochs=None, max_steps=STEPS,
             devices=devices, strategy="ddp" if devices > 1 else "auto", seed=seed, progress_bar=False,
             callbacks=[LoopTimer()])


def run_all(seeds: list[int], out: Path) -> dict:
    """Every (row, seed) in its own child process; results written after each run (a cut run keeps them)."""
    from exprflow.io import write_text_atomic

    result = json.loads(out.read_text()) if out.exists() else {"runs": []}
    result.update(steps=STEPS, warmup=WARMUP, dataset="pbmc3k", seeds=seeds, cpu_count=os.cpu_count())
    done = {(r["row"], r["seed"]) for r in result["runs"]}
    for seed in seeds:
        for row in ROWS:
            if (row, seed) in done:
                continue
            with tempfile.TemporaryDirectory() as log_dir:
                before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
                env = {**os.environ, "OMP_NUM_THREADS": "1"}
                proc = subprocess.run([sys.executable, __file__, "--worker", f"{row},{seed}", "--log-dir", log_dir],
                                      capture_output=True, text=True, env=env)
                wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
                if proc.returncode != 0:
                    logging.warning("%s seed %d failed:\n%s", row, seed, proc.stderr[-3000:])
                    continue
                ranks = [json.loads(p.read_text()) for p in sorted(Path(log_dir).glob("rank*.json"))]
            rank0 = ranks[0]
            cells = rank0["timed_steps"] * rank0["batch_per_process"] * rank0["world_size"]
            run = {"row": row, "seed": seed, "ranks": ranks, "cells_per_s": cells / rank0["loop_wall_s"],
                   "loop_cpu_s": sum(r["loop_cpu_s"] for r in ranks), "loop_wall_s": rank0["loop_wall_s"],
                   "cpu_s_per_1k_cells": 1000 * sum(r["loop_cpu_s"] for r in ranks) / cells,
                   "process_wall_s": wall, "torch_threads": rank0["torch_threads"],
                   "process_cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
                   "load_average": os.getloadavg()[0]}
            result["runs"].append(run)
            logging.warning("%s seed %d: %.0f cells/s, loop %.1f s wall / %.1f CPU-s, %.0f s in all", row, seed,
                            run["cells_per_s"], run["loop_wall_s"], run["loop_cpu_s"], wall)
            write_text_atomic(json.dumps(result, indent=2), out)
    return result


def checkpoint_cost(out: Path, repeats: int = 5) -> dict:
    """Size and write / read seconds of a StateFlow checkpoint on PBMC3k (weights, Adam moments, EMA, RNG)."""
    import torch

    from exprflow.data import read_adata
    from exprflow.models import StateFlow
    from exprflow.training.checkpoint import read_checkpoint, write_checkpoint

    torch.set_num_threads(1)
    path, key = DATASETS["pbmc3k"]
    with tempfile.TemporaryDirectory() as tmp:
        model = StateFlow(read_adata(path), condition_key=key)
        model.train(max_steps=3, batch_size=128, progress_bar=False, checkpoint_dir=tmp, checkpoint_every=1)
        ckpt = read_checkpoint(Path(tmp) / "flow.ckpt")
        writes, reads = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            write_checkpoint(ckpt, Path(tmp) / "copy.ckpt")
            writes.append(time.perf_counter() - start)
            start = time.perf_counter()
            read_checkpoint(Path(tmp) / "copy.ckpt")
            reads.append(time.perf_counter() - start)
        result = {"size_mb": (Path(tmp) / "copy.ckpt").stat().st_size / 2**20, "write_s": writes, "read_s": reads,
                  "parameters": sum(p.numel() for p in model.backbone.parameters()), "repeats": repeats,
                  "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg()[0]}
    from exprflow.io import write_text_atomic

    write_text_atomic(json.dumps(result, indent=2), out)
    return result


def table(result: dict) -> str:
    """Markdown table: one column per row, mean ± sd over seeds."""
    by = {row: [r for r in result["runs"] if r["row"] == row] for row in ROWS}
    base = [r["cells_per_s"] for r in by["1x128"]]
    lines = [f"PBMC3k, StateFlow MLP 256x3, {result['steps']} steps (steps {result['warmup']}+ timed), seeds "
             f"{result['seeds']}, 1 torch thread per process, {result['cpu_count']} CPU cores (shared)", "",
             "| | " + " | ".join(ROWS) + " |", "|---|" + "---|" * len(ROWS)]

    def line(label, get):
        lines.append(f"| {label} | " + " | ".join(mean_sd(get(r) for r in by[row]) for row in ROWS) + " |")

    line("cells / s (training loop)", lambda r: r["cells_per_s"])
    if base:
        mean_base = sum(base) / len(base)
        line("speed-up vs 1x128", lambda r: r["cells_per_s"] / mean_base)
    line("loop wall s", lambda r: r["loop_wall_s"])
    line("loop CPU-s (all processes)", lambda r: r["loop_cpu_s"])
    line("CPU-s per 1,000 cells", lambda r: r["cpu_s_per_1k_cells"])
    line("end-to-end wall s (incl. start-up)", lambda r: r["process_wall_s"])
    line("load average during the run", lambda r: r["load_average"])
    return "\n".join(lines)


def figure(result: dict, path: Path) -> None:
    """Bars (mean, with each seed as a dot): cells/s of the training loop and CPU-s per 1,000 cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, key, label in ((axes[0], "cells_per_s", "cells / s (training loop)"),
                           (axes[1], "cpu_s_per_1k_cells", "CPU-s per 1,000 cells (all processes)")):
        for i, row in enumerate(ROWS):
            values = [r[key] for r in result["runs"] if r["row"] == row]
            if values:
                ax.bar(i, sum(values) / len(values), color="#8fb3d9")
                ax.plot([i] * len(values), values, "k.", ms=5)
        ax.set_xticks(range(len(ROWS)), [f"{r.split('x')[0]} proc x {r.split('x')[1]}" for r in ROWS])
        ax.set_title(label, fontsize=9)
    save_figure(fig, path, "DDP on CPU processes (gloo), StateFlow on PBMC3k, shared 2-core machine", fontsize=9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "ddp_scaling.json")
    parser.add_argument("--table", type=Path, default=None, help="Print the table of a saved result and exit.")
    parser.add_argument("--figure", type=Path, default=HERE / "figures" / "ddp_scaling.png")
    parser.add_argument("--checkpoint-cost", type=Path, default=None,
                        help="Measure checkpoint size and write/read time instead, into this JSON file.")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--log-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        row, seed = args.worker.split(",")
        worker(row, int(seed), args.log_dir)
        return
    if args.checkpoint_cost:
        print(json.dumps(checkpoint_cost(args.checkpoint_cost), indent=2))
        return
    result = json.loads(args.table.read_text()) if args.table else run_all(args.seeds, args.out)
    figure(result, args.figure)
    print(table(result))


if __name__ == "__main__":
    main()
