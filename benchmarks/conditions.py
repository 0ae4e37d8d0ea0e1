"""Several condition keys on kang2018_ifnb_small_labeled: cell type x donor x stimulation.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/conditions.py run --seeds 0 1 2 --out benchmarks/results/conditions_kang_small.json
    python benchmarks/conditions.py table benchmarks/results/conditions_kang_small.json

The data's ``sample_id`` (ctrl101, stim107, ...) is split into ``donor`` (101, 107) and ``condition``
(ctrl, stim); the keys are ``cell_type``, ``donor`` and ``condition`` (20 combinations).

Per seed, all LatentFlows with the same budget:

1. Per combination (80/20 split stratified by combination, the protocol's per-condition metrics over
   combinations with >= 20 test cells): the joint model (three keys, an embedding per attribute) vs
   models per attribute (``--baselines``: ``cell_type`` only, ``condition`` only; asked for the test
   cells' labels of their own attribute) or on the combination as one label (one embedding each).
2. Held-out combination: every cell of (CD14+ Monocytes, donor 107) is hidden from training; the joint
   model generates it (``joint`` and ``product`` composition, weights 1) from the attributes seen
   separately, compared (energy, c2st_knn; floor: the hidden cells' other half) with the cell-type-only
   model and with the nearest seen combination's real cells (the same cell type and stimulation, donor
   101).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch
from bench_common import SHARED, cpu_seconds, mean_sd

from exprflow.experiment import split_adata
from exprflow.metrics.combinations import (
    combination_labels, evaluate_combinations, hold_out_combination, score_against_hidden,
)
from exprflow.models import LatentFlow

KEYS = ["cell_type", "donor", "condition"]
HIDDEN = {"cell_type": "CD14+ Monocytes", "donor": "107"}
NEAREST_DONOR = "101"
BUDGET = {"max_steps": 600, "flow_steps": 800}  # VAE steps, flow steps (small: 1 thread on a shared machine)
BASELINES = {"cell_type_only": "cell_type", "condition_only": "condition", "combination_label": "combination"}


def load() -> ad.AnnData:
    adata = ad.read_h5ad(SHARED / "kang2018_ifnb_small_labeled.h5ad")
    sample = adata.obs["sample_id"].astype(str)
    adata.obs["donor"] = pd.Categorical(sample.str.replace("ctrl", "").str.replace("stim", ""))
    adata.obs["combination"] = pd.Categorical(combination_labels(adata.obs, KEYS))
    return adata


def train(adata: ad.AnnData, key, seed: int) -> tuple[LatentFlow, float, float]:
    torch.manual_seed(seed)
    w0, c0 = time.perf_counter(), cpu_seconds()
    model = LatentFlow(adata, condition_key=key).train(seed=seed, progress_bar=False, **BUDGET)
    return model, time.perf_counter() - w0, cpu_seconds() - c0


def like(model: LatentFlow, real: ad.AnnData, key, seed: int, **kwargs) -> ad.AnnData:
    """Generated cells for ``real``'s labels of ``key`` (one per cell), with real's labels of every key."""
    if isinstance(key, list):
        gen = model.generate(conditions=real.obs[key], seed=seed, **kwargs)
    else:
        gen = model.generate(conditions=list(real.obs[key].astype(str)), seed=seed, **kwargs)
    for k in KEYS:
        gen.obs[k] = real.obs[k].astype(str).to_numpy()
    return gen


def per_combination(adata: ad.AnnData, seed: int, baselines: list[str], joint: bool = True) -> dict:
    tr, te = split_adata(adata, None, "combination", seed)
    out = {}
    for name, key in [("joint", KEYS)] * joint + [(b, BASELINES[b]) for b in baselines]:
        model, wall, cpu = train(tr, key, seed)
        r = evaluate_combinations(te, like(model, te, key, seed), tr, KEYS, seed=seed)
        out[name] = {"ratio_to_floor": r["ratio_to_floor"], "c2st_knn": r["metrics"]["c2st_knn"],
                     "per_combination_energy_ratio": {
                         c: v["energy"] / r["per_condition_floor"][c]["energy"] for c, v in r["per_condition"].items()},
                     "train_wall_s": wall, "train_cpu_s": cpu}
        logging.warning("seed %d %s: energy/floor %.2f (%d combinations), train %.0f s wall %.0f CPU-s", seed, name,
                        r["ratio_to_floor"]["energy"], len(r["per_condition"]), wall, cpu)
    return out


def held_out(adata: ad.AnnData, seed: int) -> dict:
    kept, hidden_rows = hold_out_combination(adata, HIDDEN)
    tr, hidden = adata[kept].copy(), adata[hidden_rows].copy()
    joint, w1, c1 = train(tr, KEYS, seed)
    ct_only, w2, c2 = train(tr, "cell_type", seed)
    same_type = (tr.obs["cell_type"].astype(str) == HIDDEN["cell_type"]).to_numpy()
    nearest = tr[same_type & (tr.obs["donor"].astype(str) == NEAREST_DONOR).to_numpy()]
    candidates = {
        "joint": like(joint, hidden, KEYS, seed),
        "product": like(joint, hidden, KEYS, seed, guidance={k: 1.0 for k in KEYS}, composition="product"),
        "cell_type_only": like(ct_only, hidden, "cell_type", seed),
        "nearest_seen_real": nearest,
    }
    scores = score_against_hidden(hidden, candidates, tr, seed=seed)
    scores["train_wall_s"], scores["train_cpu_s"] = w1 + w2, c1 + c2
    logging.warning("seed %d held-out: %s", seed, {k: round(v["energy_ratio"], 2) for k, v in scores.items()
                                                  if isinstance(v, dict) and "energy_ratio" in v})
    return scores


def run(args) -> None:
    torch.set_num_threads(1)
    adata = load()
    results = {"baselines": args.baselines, "keys": KEYS, "hidden": HIDDEN, "budget": BUDGET, "threads": torch.get_num_threads(), "seeds": {}}
    w0, c0 = time.perf_counter(), cpu_seconds()
    for seed in args.seeds:
        results["seeds"][str(seed)] = {"per_combination": per_combination(adata, seed, args.baselines,
                                                                          not args.baselines_only)}
        if not args.baselines_only:
            results["seeds"][str(seed)]["held_out"] = held_out(adata, seed)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1))
    results["wall_s"], results["cpu_s"] = time.perf_counter() - w0, cpu_seconds() - c0
    Path(args.out).write_text(json.dumps(results, indent=1))


def table(args) -> None:
    results = json.loads(Path(args.results).read_text())
    seeds = list(results["seeds"].values())
    print(f"Per combination ({len(seeds)} seeds, mean ± sd): ratio to floor, c2st_knn")
    print("| model | energy / floor | w2 / floor | mmd / floor | c2st_knn | train CPU-s |")
    print("|---|---|---|---|---|---|")
    for name in seeds[0]["per_combination"]:
        rows = [s["per_combination"][name] for s in seeds]
        print(f"| {name} | " + " | ".join(mean_sd([r["ratio_to_floor"][m] for r in rows]) for m in ("energy", "w2", "mmd"))
              + f" | {mean_sd([r['c2st_knn'] for r in rows])} | {mean_sd([r['train_cpu_s'] for r in rows])} |")
    combos = sorted({c for s in seeds for n in s["per_combination"]
                     for c in s["per_combination"][n]["per_combination_energy_ratio"]})
    names = list(seeds[0]["per_combination"])
    print("\nEnergy / floor per combination (mean over seeds)\n\n| combination | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for c in combos:
        vals = [np.mean([s["per_combination"][n]["per_combination_energy_ratio"][c] for s in seeds
                         if c in s["per_combination"][n]["per_combination_energy_ratio"]]) for n in names]
        print(f"| {c.replace(' | ', ' / ')} | " + " | ".join(f"{v:.2f}" for v in vals) + " |")
    if "held_out" not in seeds[0]:
        return
    print(f"\nHeld-out {results['hidden']} (energy vs half the hidden cells; floor: the other half)\n")
    print("| cells | energy / floor | c2st_knn |\n|---|---|---|")
    print(f"| floor (hidden cells' other half) | 1 | {mean_sd([s['held_out']['floor']['c2st_knn'] for s in seeds])} |")
    for name in ("joint", "product", "cell_type_only", "nearest_seen_real"):
        print(f"| {name} | {mean_sd([s['held_out'][name]['energy_ratio'] for s in seeds])} | "
              f"{mean_sd([s['held_out'][name]['c2st_knn'] for s in seeds])} |")
    if "wall_s" in results:
        print(f"\nwhole run: {results['wall_s']:.0f} s wall, {results['cpu_s']:.0f} CPU-s, {results['threads']} thread(s)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--out", default="benchmarks/results/conditions_kang_small.json")
    r.add_argument("--baselines", nargs="*", default=["cell_type_only"], choices=sorted(BASELINES),
                   help="models per attribute (or on the combination as one label) to compare with")
    r.add_argument("--baselines-only", action="store_true",
                   help="only the --baselines rows of the per-combination table (no joint model, no held-out part)")
    t = sub.add_parser("table")
    t.add_argument("results")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    run(args) if args.command == "run" else table(args)


if __name__ == "__main__":
    main()
