"""Leave-one-time-point-out benchmark of the sequence flow (issue 6, items 1-3 and 5).

Usage::

    python -m benchmarks trajectories --seeds 0 1 2                  # every task (the harness's datasets)
    python -m benchmarks trajectories --dataset hsmm:24 --seeds 0 --set steps=200 'rows=["interp","s4d"]'
    python -m benchmarks trajectories --table benchmarks/results/trajectories.json   # an older result
    python benchmarks/trajectories.py --figure benchmarks/figures/trajectories_paul15.png --steps 300

Tasks: ``hsmm:24`` / ``hsmm:48`` (hsmm_timecourse_fpkm, FPKM, the Gaussian log1p-PCA latent, top 2,000
genes by log1p variance over the train time points) and ``paul15:K`` (K = 4 by default; paul15_pseudotime, counts, the NB
count VAE; lineage 1, cells with weight_lineage1 >= 0.5, 8 quantile bins of pseudotime_lineage1; bin K
held out). The model trains on every other time point (the held-out one is a grid step without cells)
and fills the held-out step in with the observed ones as context (real train cells chained by OT).

Rows: ``recon`` (not a model: the real held-out cells of half B encoded and decoded, the best a
generator in this latent space can do), ``interp`` (OT-displacement interpolation of the two neighbouring time points in the same latent
space, decoded by the same decoder), ``s4d``, ``mamba``, ``transformer``, ``hybrid`` (S4D and attention
blocks alternating). Every backbone row shares the task's latent space within a seed, so one harness job
(row ``all``) is one (task, seed) with every row of the option ``rows``; a task is the harness's dataset.

Metrics (EVALUATION.md's definitions): the held-out cells are split in half (seed 0): A is the test
set, B the floor's real sample. Reference space: the protocol's normalisation and a 30-component PCA
fitted on the train cells (the observed time points; held-out cells are never seen). Each row
generates |A| cells; w2, energy, mmd against A, and coverage, as ratios to the floor (B vs A).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from bench_common import cpu_seconds, mean_sd, shared, smoke_adata
from harness import Benchmark

ROWS = ["interp", "s4d", "mamba", "transformer", "hybrid"]
TASKS = ["hsmm:24", "hsmm:48", "paul15:4"]
N_BINS = 8


def load_task(task: str, smoke: bool = False):
    """(train AnnData, held-out AnnData, time_key, model kwargs, counts, held-out time, grid).

    ``smoke``: the bundled PBMC3k subset of ``bench_common.smoke_adata`` with its random time columns.
    """
    import anndata as ad

    name, _, held = task.partition(":")
    if name == "hsmm":
        adata = smoke_adata() if smoke else ad.read_h5ad(shared("hsmm_timecourse_fpkm.h5ad"))
        hours = adata.obs["Hours"].astype(int).to_numpy()
        train_rows = hours != int(held)
        y = np.log1p(adata.X[train_rows].toarray())
        genes = np.sort(np.argsort(-y.var(0), kind="stable")[:2000])
        adata = adata[:, genes].copy()
        grid = sorted(set(hours.tolist()))
        return (adata[train_rows].copy(), adata[~train_rows].copy(), "Hours", {"time_points": grid}, False,
                float(held), [float(g) for g in grid])
    adata = smoke_adata() if smoke else ad.read_h5ad(shared("paul15_pseudotime.h5ad"))
    adata = adata[adata.obs["weight_lineage1"].to_numpy() >= 0.5].copy()
    from exprflow.data.timecourse import quantile_bins

    pt = adata.obs["pseudotime_lineage1"].to_numpy()
    bins = quantile_bins(pt, N_BINS)
    centres = np.array([pt[bins == k].mean() for k in range(N_BINS)])
    adata.obs["bin_time"] = centres[bins]
    keep = bins != int(held)
    return (adata[keep].copy(), adata[~keep].copy(), "bin_time",
            {"time_points": centres.tolist(), "weight_key": "weight_lineage1"}, True, float(centres[int(held)]),
            centres.tolist())


def run_task(task: str, seed: int, rows: list[str], steps: int, vae_steps: int, width: int, depth: int,
             batch_size: int, n_sequences: int, smoke: bool = False) -> list[dict]:
    """Train every row on one task and seed (sharing the latent space) and score the held-out cells."""
    import torch

    torch.set_num_threads(1)
    from exprflow.flows.trajectories import displacement_interpolation
    from exprflow.metrics import ReferenceSpace, coverage, energy, mmd, w2
    from exprflow.models.trajectory_flow import TrajectoryFlow

    train, held, time_key, kwargs, counts, t_held, grid = load_task(task, smoke)
    split = np.random.default_rng(0).permutation(held.n_obs)
    test, floor_ref = held[split[: held.n_obs // 2]], held[split[held.n_obs // 2:]]
    space = ReferenceSpace(30, counts=counts).fit(train.X)
    z_test = space.transform(test.X)
    n = test.n_obs

    def scores(X) -> dict:
        z = space.transform(X)
        return {"w2": w2(z, z_test), "energy": energy(z, z_test), "mmd": mmd(z, z_test),
                "coverage": coverage(z_test, z)}

    floor = scores(floor_ref.X[: n])
    out, first = [], None
    model_kwargs = dict(kwargs, n_latent=10, n_sequences=n_sequences,
                        backbone_kwargs={"width": width, "depth": depth})
    for row in rows:
        start_wall, start_cpu = time.perf_counter(), cpu_seconds()
        backbone = "s4d" if row in ("interp", "recon") else row
        torch.manual_seed(seed)  # initial weights (VAE, backbone) independent of the rows run before
        model = TrajectoryFlow(train, time_key=time_key, backbone=backbone, **model_kwargs)
        if row == "recon":  # the latent space's ceiling: real held-out cells (half B) encoded and decoded
            model.train(max_steps=1, vae_steps=vae_steps, seed=seed, progress_bar=False, representation_from=first,
                        batch_size=batch_size)
            z = model.representation.encode(floor_ref.X[:n].tocsr() if hasattr(floor_ref.X, "tocsr") else floor_ref.X)
            X = model.representation.decode(z, np.random.default_rng(seed))
            params = 0
        elif row == "interp":
            model.train(max_steps=1, vae_steps=vae_steps, seed=seed, progress_bar=False, representation_from=first,
                        batch_size=batch_size)
            k = model.grid_index(t_held)
            states = [model.train_states[model.train_codes == model.level_of_grid[i]] for i in (k - 1, k + 1)]
            s = (grid[k] - grid[k - 1]) / (grid[k + 1] - grid[k - 1])
            z = displacement_interpolation(states[0], states[1], s, n, seed=seed)
            X = model.representation.decode(z.astype(np.float32), np.random.default_rng(seed))
            params = 0
        else:
            model.train(max_steps=steps, vae_steps=vae_steps, seed=seed, progress_bar=False,
                        representation_from=first, batch_size=batch_size)
            X = model.predict(t_held, n_cells=n, seed=seed).X
            params = sum(p.numel() for p in model.backbone.parameters())
        first = first or model
        m = scores(X)
        out.append({"task": task, "row": row, "seed": seed, "metrics": m, "floor": floor,
                    "ratio": {k: m[k] / floor[k] for k in m}, "n_test": n, "n_train": train.n_obs,
                    "params": params, "wall_s": time.perf_counter() - start_wall,
                    "cpu_s": cpu_seconds() - start_cpu, "torch_threads": torch.get_num_threads()})
        logging.warning("%s %s seed %d: w2 %.2fx, energy %.2fx floor (%.0f s)", task, row, seed,
                        out[-1]["ratio"]["w2"], out[-1]["ratio"]["energy"], out[-1]["wall_s"])
    return out


def markdown(result: dict) -> str:
    """One table per task: rows x (w2, energy, mmd, coverage ratios to the floor, wall s), mean ± sd."""
    lines = []
    runs = [x for r in result["runs"] for x in r.get("runs", [r])]  # the harness's jobs hold a (task, seed) each
    for task in dict.fromkeys(r["task"] for r in runs):
        n_test = next(r["n_test"] for r in runs if r["task"] == task)
        lines += [f"**{task}** (held-out cells: {n_test} in the test half; seeds "
                  f"{sorted({r['seed'] for r in runs if r['task'] == task})}, torch threads 1)", "",
                  "| row | w2 / floor | energy / floor | mmd / floor | coverage / floor | params | wall s | cpu s |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in dict.fromkeys(r["row"] for r in runs if r["task"] == task):
            rs = [r for r in runs if r["task"] == task and r["row"] == row]
            cells = [mean_sd(r["ratio"][k] for r in rs) for k in ("w2", "energy", "mmd", "coverage")]
            lines.append(f"| {row} | " + " | ".join(cells) + f" | {rs[0]['params']:,} | "
                         f"{mean_sd(r['wall_s'] for r in rs)} | {mean_sd(r['cpu_s'] for r in rs)} |")
        lines.append("")
    return "\n".join(lines)


def trajectory_figure(path: Path, steps: int, vae_steps: int, width: int, depth: int) -> None:
    """S4D sequence flow on paul15 lineage 1 (8 pseudotime bins, all of them), 40 generated trajectories
    drawn over the lineage's real cells (PC1/PC2 of the protocol's normalisation)."""
    import anndata as ad
    import torch

    from exprflow.models.trajectory_flow import TrajectoryFlow
    from exprflow.plotting.trajectories import plot_trajectories

    torch.set_num_threads(1)
    adata = ad.read_h5ad(shared("paul15_pseudotime.h5ad"))
    model = TrajectoryFlow(adata, time_key="pseudotime_lineage1", weight_key="weight_lineage1", n_bins=N_BINS,
                           n_latent=10, n_sequences=2048, backbone_kwargs={"width": width, "depth": depth})
    model.train(max_steps=steps, vae_steps=vae_steps, batch_size=64, progress_bar=False)
    generated = model.generate_trajectories(40, seed=0)
    real = adata[adata.obs["weight_lineage1"].to_numpy() >= 0.5]
    plot_trajectories(real, generated, path, time_key="pseudotime_lineage1", counts=True,
                      title="generated trajectories (S4D, 8 bins)")


def table_or_worker(args, markdown, work) -> bool:
    """Set up logging; ``--table``: print a saved result's table; ``--worker JOB``: print ``work(JOB)`` as JSON
    for the parent process. Returns True when one of them was done (shared with time_cost.py)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    if args.table:
        print(markdown(json.loads(args.table.read_text())))  # noqa: T201 (a script's output)
    elif args.worker:
        print(json.dumps(work(args.worker)))  # noqa: T201 (to the parent)
    return bool(args.table or args.worker)


def run_one(row: str, dataset: str, seed: int, smoke: bool, rows: tuple = tuple(ROWS), steps: int = 200,
            vae_steps: int = 600, n_sequences: int = 2048, batch_size: int = 64, width: int = 64,
            depth: int = 2) -> dict:
    """One (task, seed) with every row of ``rows`` (they share the task's latent space): ``{"runs": [...]}``.

    ``steps``: sequence-flow training steps; ``vae_steps``: count VAE steps (paul15); ``n_sequences``:
    OT-chained training trajectories; ``batch_size``: trajectories (flow) / cells (VAE) per step.
    """
    return {"runs": run_task(dataset, seed, list(rows), steps, vae_steps, width, depth, batch_size, n_sequences,
                             smoke)}


BENCHMARK = Benchmark(
    rows={"all": {"rows": "the option rows, sharing a latent space"}}, datasets=tuple(TASKS), run_one=run_one,
    table=markdown,
    options={"rows": list(ROWS), "steps": 200, "vae_steps": 600, "n_sequences": 2048, "batch_size": 64,
             "width": 64, "depth": 2},
    smoke={"rows": ["recon", *ROWS], "steps": 3, "vae_steps": 3, "n_sequences": 64, "batch_size": 16, "width": 8},
    smoke_datasets=("hsmm:24", "paul15:4"),
)


def main() -> None:
    """``--figure PATH``: draw generated paul15 trajectories; anything else runs on the harness."""
    if "--figure" not in sys.argv:
        from harness import script_main

        sys.exit(script_main(__file__))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--figure", type=Path, required=True, help="draw generated paul15 trajectories to this PNG")
    parser.add_argument("--steps", type=int, default=200, help="sequence-flow training steps")
    parser.add_argument("--vae-steps", type=int, default=600, help="count VAE steps")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=2)
    args = parser.parse_args()
    trajectory_figure(args.figure, args.steps, args.vae_steps, args.width, args.depth)


if __name__ == "__main__":
    main()
