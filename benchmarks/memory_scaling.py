"""Peak memory and time per epoch vs the number of genes (2k, 14k, 20.7k), in memory and from disk.

    nice -n 10 python benchmarks/memory_scaling.py              # pbmc3k, mouse bladder (kang: outofcore.py 1x)
    nice -n 10 python benchmarks/memory_scaling.py --figure     # figures/memory_scaling.png from both results

Same child-process protocol as ``outofcore.py`` (``/usr/bin/time -v`` peak RSS, one torch thread, a
fixed number of steps, per-epoch time EXTRAPOLATED from the steady-state step time). The 14k-gene
points are kang's 1x points of ``outofcore.py --cells``; the cells axis (1x to 10x kang) is there too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench_common import DATASETS
from outofcore import RESULTS, _save, run_child

FIGURES = Path(__file__).resolve().parent / "figures"


def genes_grid(steps: int, names: list[str], models: list[str], modes: list[str]) -> list[dict]:
    out = RESULTS / "memory_scaling_genes.json"
    runs = json.loads(out.read_text())["runs"] if out.exists() else []
    for name in names:
        path, key = DATASETS[name]
        for model in models:
            for mode in modes:
                batch = 128 if model == "vae" else 256
                runs.append(run_child(["--worker", json.dumps([mode, str(path), model, steps, batch, key])]))
                _save("memory_scaling_genes", {"steps": steps, "runs": runs})
    return runs


def _value(run: dict, key: str) -> float | None:
    """A run's value; ``epoch_cpu_s`` = steps per epoch x CPU seconds per step (None where not recorded)."""
    if key == "epoch_cpu_s":
        return None if "step_cpu_s" not in run else (run["n_cells"] // run["batch_size"]) * run["step_cpu_s"]
    return run[key]


def figure() -> Path:
    """Peak RSS and extrapolated epoch time vs genes and vs cells (memory vs disk, VAE vs StateFlow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for name in ("outofcore_cells", "outofcore_cells_state") if (RESULTS / f"{name}.json").exists()
            for r in json.loads((RESULTS / f"{name}.json").read_text())["runs"]]
    gene_runs = json.loads((RESULTS / "memory_scaling_genes.json").read_text())["runs"]
    kang_1x = [r for r in runs if r["n_cells"] < 20_000]
    runs = [r for r in runs if r["mode"] != "disk_random"]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for (axis, key, source), ax in zip(
        [("n_genes", "peak_rss_mb", gene_runs + kang_1x), ("n_genes", "epoch_cpu_s", gene_runs + kang_1x),
         ("n_cells", "peak_rss_mb", runs), ("n_cells", "epoch_cpu_s", runs)], axes.ravel()
    ):
        for model in ("vae", "state"):
            for mode, style in (("memory", "o-"), ("disk", "s--")):
                pts = sorted((r[axis], _value(r, key)) for r in source if r["model"] == model and r["mode"] == mode)
                pts = [p for p in pts if p[1] is not None]
                if pts:
                    ax.plot(*zip(*pts), style, label=f"{'LatentFlow VAE' if model == 'vae' else 'StateFlow'} {mode}")
        ax.set_xlabel(axis.replace("n_", "number of "))
        ax.set_ylabel("peak RSS (MB)" if key == "peak_rss_mb" else "CPU s per epoch (extrapolated)")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("exprflow out-of-core: 1 torch thread, fixed steps (epoch extrapolated), /usr/bin/time -v peak RSS")
    fig.tight_layout()
    FIGURES.mkdir(exist_ok=True)
    out = FIGURES / "memory_scaling.png"
    fig.savefig(out, dpi=120)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--datasets", default="pbmc3k,mouse_bladder_han2018")
    parser.add_argument("--models", default="vae,state")
    parser.add_argument("--modes", default="memory,disk")
    parser.add_argument("--figure", action="store_true")
    args = parser.parse_args()
    if args.figure:
        print(figure())
        return
    genes_grid(args.steps, args.datasets.split(","), args.models.split(","), args.modes.split(","))


if __name__ == "__main__":
    main()
