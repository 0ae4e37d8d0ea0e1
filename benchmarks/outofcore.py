"""Out-of-core training and streamed generation: peak RSS (``/usr/bin/time -v``) and throughput.

    python benchmarks/build_big_h5ad.py --copies 10 --out /tmp/exprflow_big/kang_x10.h5ad   # (and 2, 5)
    nice -n 10 python benchmarks/outofcore.py --cells           # 1x/2x/5x/10x kang, disk vs memory
    nice -n 10 python benchmarks/outofcore.py --generate        # 10k, 50k (1 chunk) vs 1M (20 chunks)

Every point runs in its own child process under ``/usr/bin/time -v`` (peak RSS = "Maximum resident set
size" of that process: Python, torch, the model and the data; the OS page cache that holds the file
is not process memory and is not counted). One torch thread. A point builds the model (which runs the
data preparation: ``prepare_counts`` in memory, or the streaming pass on disk) and then trains a FIXED
number of steps of LatentFlow's VAE phase or of StateFlow; the time per epoch is EXTRAPOLATED as
``steps per epoch x steady-state step time`` (steps after the first 10), it is not a measured epoch.

Modes: ``memory`` = ``read_h5ad`` + the model's own ``fit_plan`` (random batches of an in-memory CSR);
``disk`` = backed file + ``fit_loader`` on the block-shuffled step loader (``BackedRows.step_loader``);
``disk_random`` = backed file + the models' current ``fit_plan`` route (random rows read one by one).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
import time
from pathlib import Path

from bench_common import DATASETS, cpu_seconds

RESULTS = Path(__file__).resolve().parent / "results"
BIG = Path("/tmp/exprflow_big")
WARMUP = 10


def _step_timer():
    import lightning as L

    class StepTimer(L.Callback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.cpu: list[float] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.times.append(time.perf_counter())
            self.cpu.append(time.process_time())

    return StepTimer()


def train_point(mode: str, path: str, model_name: str, steps: int, batch_size: int, condition_key: str | None) -> dict:
    """Build the model on ``path`` and train ``steps`` steps; the child process's JSON result."""
    import anndata as ad
    import numpy as np
    import torch

    from exprflow.models import LatentFlow, StateFlow
    from exprflow.training.fit import fit_loader, fit_plan
    from exprflow.training.plans import FlowTrainingPlan
    from exprflow.training.vae_plan import VAETrainingPlan

    torch.set_num_threads(1)
    start, cpu0 = time.perf_counter(), cpu_seconds()
    adata = ad.read_h5ad(path, backed="r" if mode.startswith("disk") else None)
    cls = LatentFlow if model_name == "vae" else StateFlow
    model = cls(adata, condition_key=condition_key)
    setup_s = time.perf_counter() - start
    if model_name == "vae":
        plan, conditions = VAETrainingPlan(model.vae, model.config.vae_optim), None
    else:
        plan = FlowTrainingPlan(model.backbone, model.objective, model.representation.encode, model.config.flow_optim, 0)
        conditions = model.data.conditions
    timer = _step_timer()
    common = dict(max_epochs=None, max_steps=steps, progress_bar=False, callbacks=[timer])
    if mode == "disk":
        fit_loader(plan, model.data.X.step_loader(conditions, batch_size, seed=0), **common)
    else:
        fit_plan(plan, model.data.X, conditions, batch_size=batch_size, **common)
    step_s = float(np.diff(timer.times[WARMUP:]).mean())
    step_cpu_s = float(np.diff(timer.cpu[WARMUP:]).mean())
    n_cells, n_genes = model.data.n_cells, len(model.var_names)
    return {
        "mode": mode, "model": model_name, "path": path, "n_cells": n_cells, "n_genes": n_genes, "steps": steps,
        "batch_size": batch_size, "setup_s": setup_s, "step_s": step_s, "step_cpu_s": step_cpu_s,
        "cells_per_s": batch_size / step_s, "cells_per_cpu_s": batch_size / step_cpu_s,
        "epoch_s_extrapolated": (n_cells // batch_size) * step_s, "wall_s": time.perf_counter() - start,
        "cpu_s": cpu_seconds() - cpu0, "torch_threads": torch.get_num_threads(),
    }


def generate_point(n_cells: int, chunk_size: int, out: str) -> dict:
    """Train a small LatentFlow on PBMC3k's 200 most-detected genes, then stream ``n_cells`` to ``out``."""
    import anndata as ad
    import numpy as np
    import torch

    from exprflow.models import LatentFlow

    torch.set_num_threads(1)
    path, key = DATASETS["pbmc3k"]
    adata = ad.read_h5ad(path)
    top = np.argsort(-np.asarray((adata.X > 0).sum(0)).ravel())[:200]
    adata = adata[:, np.sort(top)].copy()
    model = LatentFlow(adata, condition_key=key, vae={"n_latent": 8}, backbone_kwargs={"hidden": 64, "depth": 2})
    model.train(max_steps=200, flow_steps=200, progress_bar=False)
    start, cpu0 = time.perf_counter(), cpu_seconds()
    model.generate_to_file(out, n_cells=n_cells, chunk_size=chunk_size, n_steps=8, seed=0, overwrite=True,
                           progress_bar=False)
    wall = time.perf_counter() - start
    written = ad.read_h5ad(out, backed="r")
    return {"n_cells": n_cells, "chunk_size": chunk_size, "n_genes": 200, "n_steps": 8, "gen_wall_s": wall,
            "gen_cpu_s": cpu_seconds() - cpu0, "cells_per_s": n_cells / wall, "file_bytes": Path(out).stat().st_size,
            "n_obs_read_back": written.n_obs, "torch_threads": torch.get_num_threads()}


def run_child(args: list[str]) -> dict:
    """Run this script with ``args`` under ``/usr/bin/time -v``; its JSON plus the peak RSS in MB."""
    cmd = ["/usr/bin/time", "-v", sys.executable, __file__, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["peak_rss_mb"] = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1)) / 1024
    result["time_v_wall"] = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", proc.stderr).group(1)
    logging.warning("%s", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items()})
    return result


def _save(name: str, result: dict) -> None:
    from exprflow.io import write_text_atomic

    write_text_atomic(json.dumps(result, indent=2), RESULTS / f"{name}.json")


def cells_grid(copies: list[int], steps: int, models: list[str], modes: list[str], name: str) -> list[dict]:
    """Every (copies, model, mode) point in a child process; results saved after each point."""
    out = RESULTS / f"{name}.json"
    runs = json.loads(out.read_text())["runs"] if out.exists() else []
    for c in copies:
        path = str(BIG / f"kang_x{c}.h5ad")
        for model in models:
            for mode in modes:
                batch = 128 if model == "vae" else 256
                runs.append(run_child(["--worker", json.dumps([mode, path, model, steps, batch, "condition"])]))
                _save(name, {"steps": steps, "warmup_steps": WARMUP, "runs": runs})
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--gen-worker", help=argparse.SUPPRESS)
    parser.add_argument("--cells", action="store_true", help="disk vs memory on 1x/2x/5x/10x kang")
    parser.add_argument("--generate", action="store_true", help="streamed generation, 10k vs 1M cells")
    parser.add_argument("--copies", default="1,2,5,10")
    parser.add_argument("--models", default="vae,state")
    parser.add_argument("--modes", default="memory,disk")
    parser.add_argument("--name", default="outofcore_cells", help="results/<name>.json (appended to)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--gen-cells", default="10000,50000,1000000", help="cells per --generate point")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(train_point(*json.loads(args.worker))))
        return
    if args.gen_worker:
        print(json.dumps(generate_point(*json.loads(args.gen_worker))))
        return
    if args.cells:
        cells_grid([int(c) for c in args.copies.split(",")], args.steps, args.models.split(","),
                   args.modes.split(","), args.name)
    if args.generate:
        out = RESULTS / "outofcore_generate.json"
        runs = json.loads(out.read_text())["runs"] if out.exists() else []
        for n in [int(n) for n in args.gen_cells.split(",")]:
            runs.append(run_child(["--gen-worker", json.dumps([n, 50_000, str(BIG / f"gen_{n}.h5ad")])]))
            _save("outofcore_generate", {"runs": runs})


if __name__ == "__main__":
    main()
