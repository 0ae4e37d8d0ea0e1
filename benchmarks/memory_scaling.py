"""Peak memory and time per epoch vs the number of genes (2k, 14k, 20.7k), in memory and from disk.

    nice -n 10 python benchmarks/memory_scaling.py              # pbmc3k, mouse bladder (kang: outofcore.py 1x)
    nice -n 10 python benchmarks/memory_scaling.py --figure     # figures/memory_scaling.png from both results
    python benchmarks/memory_scaling.py --table                 # the markdown tables of BENCHMARKS.md

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


def _runs(pattern: str) -> list[dict]:
    """The runs of every results file matching ``pattern`` (outofcore.py writes one file per --name)."""
    return [r for path in sorted(RESULTS.glob(pattern)) for r in json.loads(path.read_text())["runs"]]


def _value(run: dict, key: str) -> float | None:
    """A run's value; ``epoch_cpu_s`` = steps per epoch x CPU seconds per step (None where not recorded)."""
    if key == "epoch_cpu_s":
        return None if "step_cpu_s" not in run else (run["n_cells"] // run["batch_size"]) * run["step_cpu_s"]
    return run[key]


def figure() -> Path:
    """Peak RSS and CPU time per step vs genes (the files differ in cells), peak RSS and extrapolated CPU
    time per epoch vs cells (1x-10x kang); memory vs disk, LatentFlow's VAE vs StateFlow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = _runs("outofcore_cells*.json")
    gene_runs = _runs("memory_scaling_genes.json")
    kang_1x = [r for r in runs if r["n_cells"] < 20_000]
    runs = [r for r in runs if r["mode"] != "disk_random"]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for (axis, key, source), ax in zip(
        [("n_genes", "peak_rss_mb", gene_runs + kang_1x), ("n_genes", "step_cpu_s", gene_runs + kang_1x),
         ("n_cells", "peak_rss_mb", runs), ("n_cells", "epoch_cpu_s", runs)], axes.ravel()
    ):
        for model in ("vae", "state"):
            for mode, style in (("memory", "o-"), ("disk", "s--")):
                pts = sorted((r[axis], _value(r, key)) for r in source if r["model"] == model and r["mode"] == mode)
                pts = [p for p in pts if p[1] is not None]
                if pts:
                    ax.plot(*zip(*pts), style, label=f"{'LatentFlow VAE' if model == 'vae' else 'StateFlow'} {mode}")
        ax.set_xlabel(axis.replace("n_", "number of "))
        ax.set_ylabel({"peak_rss_mb": "peak RSS (MB)", "step_cpu_s": "CPU s per training step"}.get(
            key, "CPU s per epoch (extrapolated)"))
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("exprflow out-of-core: 1 torch thread, fixed steps (epoch extrapolated), /usr/bin/time -v peak RSS")
    fig.tight_layout()
    FIGURES.mkdir(exist_ok=True)
    out = FIGURES / "memory_scaling.png"
    fig.savefig(out, dpi=120)
    return out


def tables() -> str:
    """Markdown tables of every measured point (training and streamed generation)."""
    runs = _runs("outofcore_cells*.json") + _runs("memory_scaling_genes.json")
    seen, rows = set(), []
    for r in sorted(runs, key=lambda r: (r["model"], r["n_genes"], r["n_cells"], r["mode"])):
        key = (r["model"], r["path"], r["mode"])
        if key in seen:
            continue
        seen.add(key)
        rows.append(f"| {'LatentFlow VAE' if r['model'] == 'vae' else 'StateFlow'} | {Path(r['path']).stem} | "
                    f"{r['n_cells']:,} | {r['n_genes']:,} | {r['mode']} | {r['peak_rss_mb']:,.0f} | {r['setup_s']:.1f} | "
                    f"{r['step_cpu_s']:.3f} | {r['cells_per_cpu_s']:,.0f} | {_value(r, 'epoch_cpu_s'):,.1f} | "
                    f"{r['cells_per_s']:,.0f} | {r['cpu_s']:.1f} |")
    head = ("| model | file | cells | genes | mode | peak RSS (MB) | setup wall (s) | CPU s / step | cells / CPU s | "
            "CPU s / epoch (extrap.) | cells / wall s | CPU s (point) |\n|---|---|---|---|---|---|---|---|---|---|---|---|")
    out = [head, *rows, ""]
    gen = RESULTS / "outofcore_generate.json"
    if gen.exists():
        out += ["| cells generated | chunk size | genes | peak RSS (MB) | generation CPU s | cells / CPU s | "
                "cells / wall s | file (MB) |", "|---|---|---|---|---|---|---|---|"]
        for r in sorted(json.loads(gen.read_text())["runs"], key=lambda r: r["n_cells"]):
            out.append(f"| {r['n_cells']:,} | {r['chunk_size']:,} | {r['n_genes']} | {r['peak_rss_mb']:,.0f} | "
                       f"{r['gen_cpu_s']:.1f} | {r['n_cells'] / r['gen_cpu_s']:,.0f} | {r['cells_per_s']:,.0f} | "
                       f"{r['file_bytes'] / 1e6:,.0f} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--datasets", default="pbmc3k,mouse_bladder_han2018")
    parser.add_argument("--models", default="vae,state")
    parser.add_argument("--modes", default="memory,disk")
    parser.add_argument("--figure", action="store_true")
    parser.add_argument("--table", action="store_true", help="print the markdown tables of all results")
    args = parser.parse_args()
    if args.figure or args.table:
        print(figure() if args.figure else tables())
        return
    genes_grid(args.steps, args.datasets.split(","), args.models.split(","), args.modes.split(","))


if __name__ == "__main__":
    main()
