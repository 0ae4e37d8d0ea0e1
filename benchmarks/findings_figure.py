"""Quality against cost for every (data structure, representation) pair measured: one figure, one panel per
data structure, every point read from the result files in ``benchmarks/results/``.

Usage::

    python benchmarks/findings_figure.py --out docs/images/findings_quality_cost.png
    python benchmarks/findings_figure.py --print      # the plotted values (mean over seeds) as text

Each panel plots the protocol's headline figure of one comparison (lower is better everywhere: energy /
floor, w2 / floor, 1 - R^2 of the top-100 DE genes, composition energy distance, bits per nucleotide)
against the training CPU-seconds of one run (mean over seeds; log scales where they span decades). Points are each row at the
budget it was measured with, so a point's position is quality *at its cost*, not at a common budget.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from collections import defaultdict
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"

#: representation family -> colour (one colour per representation across panels)
FAMILY = {
    "latent (VAE)": "tab:green", "state vector (MLP)": "tab:blue", "gene set": "tab:orange",
    "gene tokens": "tab:red", "pathway tokens": "tab:purple", "sequence over genes": "tab:brown",
    "sequence over time or nucleotides": "tab:cyan", "cells as tokens": "tab:pink",
    "baseline (no network)": "tab:gray",
}
ROW_FAMILY = {
    "latent:nb": "latent (VAE)", "scvi": "latent (VAE)", "latent": "latent (VAE)", "state": "state vector (MLP)",
    "mlp": "state vector (MLP)", "mlp_matched": "state vector (MLP)", "deepsets": "gene set",
    "set_transformer": "gene set", "rank_tokens": "gene tokens", "value_bins": "gene tokens",
    "hallmark": "pathway tokens", "hallmark_random": "pathway tokens", "go_bp": "pathway tokens",
    "go_bp_random": "pathway tokens", "s4d": "sequence over genes", "hyena": "sequence over genes",
    "mamba": "sequence over genes", "transformer": "sequence over genes",
}


def _load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def _mean_by_row(runs: list[dict], value, cost) -> dict[str, tuple[float, float]]:
    """``row -> (mean cost, mean value)`` over the runs (seeds) of each row."""
    by = defaultdict(list)
    for run in runs:
        by[run["row"]].append((cost(run), value(run)))
    return {row: tuple(np.mean(np.array(v), axis=0)) for row, v in by.items()}


def _energy(run: dict) -> float:
    return run["metrics"]["ratio_to_floor"]["energy"]


def _cpu(run: dict) -> float:
    return run["train_cpu_s"]


def _rows(runs: list[dict], suffix: str = "") -> list[tuple[str, str, float, float]]:
    """One point per row of a grid result: (name + suffix, family, mean train CPU-s, mean energy / floor)."""
    return [(row + suffix, ROW_FAMILY[row], c, v) for row, (c, v) in _mean_by_row(runs, _energy, _cpu).items()]


def _latent_and_state(dataset: str) -> list[tuple[str, str, float, float]]:
    """LatentFlow and scVI (latent.py) and StateFlow at its defaults (foundation.py) on ``dataset``."""
    state = [{**r, "row": "state"} for r in _load(f"foundation_{dataset}.json")["runs"]]
    return _rows(_load(f"latent_{dataset}.json")["runs"]) + _rows(state, " (2,000 steps)")


def panel_pbmc3k() -> list[tuple[str, str, float, float]]:
    """Static expression, PBMC3k: latent vs direct flow, sets and tokens, pathways (energy / floor)."""
    sets = _load("sets_pbmc3k_a.json")["runs"] + _load("sets_pbmc3k_b.json")["runs"]
    paths = [r for s in range(3) for r in _load(f"pathways_pbmc3k_s{s}.json")["runs"] if r["row"] != "mlp"]
    return (_latent_and_state("pbmc3k") + _rows(sets, " (300 steps)")
            + _rows(_load("sets_pbmc3k_mlp_equal_cpu.json")["runs"], " (13,000 steps)") + _rows(paths))


def panel_kang() -> list[tuple[str, str, float, float]]:
    """Static expression, kang2018_ifnb (14,053 genes); the subsampled set/token rows as hollow points."""
    points = _latent_and_state("kang2018_ifnb") + _rows(_load("ssm_quality_kang2018_ifnb.json")["runs"], " (500 steps)")
    for name in ("sets_kang2018_ifnb_600cells.json", "sets_kang2018_ifnb_600cells_mlp_equal_cpu.json"):
        if (RESULTS / name).exists():
            result = _load(name)
            points += _rows(result["runs"], f" (600 cells, {result['max_steps']:,} steps)*")
    return points


def panel_bladder() -> list[tuple[str, str, float, float]]:
    """Gene axis as a sequence, mouse_bladder_han2018 (20,670 genes), 500 steps."""
    runs = _load("ssm_quality_mouse_bladder_han2018.json")["runs"]
    return [(row, ROW_FAMILY[row], c, v) for row, (c, v) in _mean_by_row(runs, _energy, _cpu).items()]


def panel_time(task: str = "hsmm:24") -> list[tuple[str, str, float, float]]:
    """Time course, held-out time point (w2 / floor)."""
    runs = [r for r in _load("trajectories.json")["runs"] if r["task"] == task]
    by = _mean_by_row(runs, lambda r: r["ratio"]["w2"], lambda r: r["cpu_s"])
    return [(row, "baseline (no network)" if row == "interp" else "sequence over time or nucleotides", c, v)
            for row, (c, v) in by.items()]


def panel_perturbation() -> list[tuple[str, str, float, float]]:
    """Perturbation, each cell type held out (1 - R^2 of the top-100 DE genes, mean over types, then seeds)."""
    jobs = [r for f in sorted(RESULTS.glob("perturbation_kang_small*.json")) for r in json.loads(f.read_text())["runs"]]
    per = defaultdict(lambda: defaultdict(list))  # row -> seed -> [(cost, r2)] over types
    for job in jobs:
        for row, m in job["metrics"].items():
            cost_key = "vae+pflow_mlp" if row == "pflow_mlp" else row
            cost = job["cost"].get(cost_key, {}).get("cpu_s", 0.0)
            per[row][job["seed"]].append((cost, m["r2_mean_top100"]))
    points = []
    for row, seeds in per.items():
        cost = np.mean([np.mean([c for c, _ in v]) for v in seeds.values()])
        r2 = np.mean([np.mean([x for _, x in v]) for v in seeds.values()])
        family = "baseline (no network)" if row in ("identity", "mean_shift", "latent_arithmetic") else (
            "sequence over time or nucleotides" if row in ("pflow_s4d", "pflow_transformer") else "latent (VAE)")
        points.append((row, family, max(cost, 0.01), 1 - r2))
    return points


def panel_populations() -> list[tuple[str, str, float, float]]:
    """Cells as tokens: composition energy distance of Dirichlet populations (1,500 flow steps)."""
    runs = _load("populations_kang_small_flow1500.json")["runs"]
    points = []
    for row, train_key in (("population", "population:dirichlet"), ("independent", "independent"),
                           ("latent", "latent")):
        cost = np.mean([r["train"][train_key]["cpu_s"] for r in runs])
        value = np.mean([r["rows"]["dirichlet"][row]["comp_energy"] for r in runs])
        family = "cells as tokens" if row != "latent" else "latent (VAE)"
        points.append((f"{row} (cells jointly)" if row == "population" else row, family, cost, value))
    return points


def panel_dna() -> list[tuple[str, str, float, float]]:
    """Nucleotides as tokens: held-out bits per nucleotide."""
    base, long = _load("dna.json"), _load("dna_hyena_1200.json")
    best = min(base["kmer"]["rows"], key=lambda r: r["bits_per_nt"])
    points = [(f"k-mer k={best['k']}", "baseline (no network)", base["kmer"]["cpu_s"], best["bits_per_nt"])]
    for name, runs in (("300 steps", base["runs"]), ("1,200 steps", long["runs"])):
        by = defaultdict(list)
        for r in runs:
            by[r["backbone"]].append((r["train_cpu_s"], r["held_out"]["bits_per_nt"]))
        for backbone, v in by.items():
            c, b = np.mean(np.array(v), axis=0)
            points.append((f"{backbone} ({name})", "sequence over time or nucleotides", c, b))
    return points


PANELS = [
    ("Static expression, PBMC3k (2,000 genes)", "energy / floor", panel_pbmc3k),
    ("Static expression, kang2018_ifnb (14,053 genes)", "energy / floor", panel_kang),
    ("Genes as a sequence, mouse bladder (20,670 genes)", "energy / floor", panel_bladder),
    ("Time course, hsmm 24 h held out", "w2 / floor", panel_time),
    ("Perturbation, held-out cell type (kang small)", "1 - R^2 top-100 DE", panel_perturbation),
    ("Cells as tokens, Dirichlet populations (kang small)", "composition energy distance", panel_populations),
    ("Nucleotides, E. coli held-out 10 %", "bits per nucleotide", panel_dna),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/images/findings_quality_cost.png"))
    parser.add_argument("--print", action="store_true", help="print the plotted values instead of drawing")
    args = parser.parse_args()
    data = [(title, ylabel, fn()) for title, ylabel, fn in PANELS]
    if args.print:
        for title, ylabel, points in data:
            print(f"{title} ({ylabel} vs train CPU-s)")  # noqa: T201 (a script's output)
            for name, family, cost, value in points:
                print(f"  {name:40s} {family:28s} {cost:10.2f} {value:10.4f}")  # noqa: T201
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, axes = plt.subplots(2, 4, figsize=(21, 11))
    for ax, (title, ylabel, points) in zip(axes.flat, data):
        # points are numbered (in order of quality); the key under the panel names them
        key = []
        for i, (name, family, cost, value) in enumerate(sorted(points, key=lambda p: p[3]), 1):
            hollow = name.endswith("*")
            ax.scatter(cost, value, s=46, color=FAMILY[family], facecolors="none" if hollow else FAMILY[family],
                       linewidths=1.5, zorder=3)
            ax.annotate(str(i), (cost, value), fontsize=8, xytext=(4, 3), textcoords="offset points")
            key.append(f"{i} {name.rstrip('*')}")
        ax.text(0, -0.2, textwrap.fill("   ".join(key), 70), transform=ax.transAxes, fontsize=7.5, va="top")
        costs, values = [p[2] for p in points], [p[3] for p in points]
        xlog = max(costs) / min(costs) > 20 and min(costs) > 0.1  # log only where it spreads the points
        if xlog:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        if ylabel == "energy / floor" and max(values) / min(values) > 10:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("training CPU-s per run" + (" (log)" if xlog else ""))
        ax.set_ylabel(ylabel + " (lower is better)")
        ax.grid(alpha=0.3, which="both")
    legend_ax = axes.flat[-1]
    legend_ax.axis("off")
    for family, colour in FAMILY.items():
        legend_ax.scatter([], [], color=colour, label=family, s=46)
    legend_ax.scatter([], [], facecolors="none", color="black", label="600-cell subsample (not the full data's floor)", s=46)
    legend_ax.legend(loc="center", fontsize=10, title="representation")
    fig.suptitle("Quality against training cost, every (data structure, representation) pair measured", fontsize=14)
    fig.subplots_adjust(left=0.04, right=0.99, top=0.93, bottom=0.1, wspace=0.28, hspace=0.7)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
