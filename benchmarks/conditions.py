"""Several condition keys on kang2018_ifnb_small_labeled: cell type x donor x stimulation.

Usage::

    OMP_NUM_THREADS=1 python -m benchmarks conditions --seeds 0 1 2
    python -m benchmarks conditions --rows per_combination --set joint=false \
        'baselines=["condition_only", "combination_label"]'        # the baselines only
    python -m benchmarks conditions --table benchmarks/results/conditions_kang_small.json   # an older result

The data's ``sample_id`` (ctrl101, stim107, ...) is split into ``donor`` (101, 107) and ``condition``
(ctrl, stim); the keys are ``cell_type``, ``donor`` and ``condition`` (20 combinations).

Per seed, all LatentFlows with the same budget (option ``budget``), two harness rows:

1. ``per_combination`` (80/20 split stratified by combination, the protocol's per-condition metrics over
   combinations with >= 20 test cells): the joint model (three keys, an embedding per attribute) vs
   models per attribute (option ``baselines``: ``cell_type`` only, ``condition`` only; asked for the test
   cells' labels of their own attribute) or on the combination as one label (one embedding each).
2. ``held_out``: every cell of (CD14+ Monocytes, donor 107) is hidden from training; the joint
   model generates it (``joint`` and ``product`` composition, weights 1) from the attributes seen
   separately, compared (energy, c2st_knn; floor: the hidden cells' other half) with the cell-type-only
   model and with the nearest seen combination's real cells (the same cell type and stimulation, donor
   101).
"""

from __future__ import annotations

import logging
import sys
import time

import anndata as ad
import numpy as np
import pandas as pd
import torch

from bench_common import cpu_seconds, load as load_dataset, mean_sd
from harness import Benchmark, script_main

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


def load(smoke: bool = False) -> ad.AnnData:
    adata = load_dataset("kang2018_ifnb_small_labeled", smoke, smoke_cells=None)  # smoke: >= 20 test cells a combination
    sample = adata.obs["sample_id"].astype(str)
    adata.obs["donor"] = pd.Categorical(sample.str.replace("ctrl", "").str.replace("stim", ""))
    adata.obs["combination"] = pd.Categorical(combination_labels(adata.obs, KEYS))
    return adata


def train(adata: ad.AnnData, key, seed: int, budget: dict = BUDGET) -> tuple[LatentFlow, float, float]:
    torch.manual_seed(seed)
    w0, c0 = time.perf_counter(), cpu_seconds()
    model = LatentFlow(adata, condition_key=key).train(seed=seed, progress_bar=False, **budget)
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


def per_combination(adata: ad.AnnData, seed: int, baselines: list[str], joint: bool = True,
                    budget: dict = BUDGET) -> dict:
    tr, te = split_adata(adata, None, "combination", seed)
    out = {}
    for name, key in [("joint", KEYS)] * joint + [(b, BASELINES[b]) for b in baselines]:
        model, wall, cpu = train(tr, key, seed, budget)
        r = evaluate_combinations(te, like(model, te, key, seed), tr, KEYS, seed=seed)
        out[name] = {"ratio_to_floor": r["ratio_to_floor"], "c2st_knn": r["metrics"]["c2st_knn"],
                     "per_combination_energy_ratio": {
                         c: v["energy"] / r["per_condition_floor"][c]["energy"] for c, v in r["per_condition"].items()},
                     "train_wall_s": wall, "train_cpu_s": cpu}
        logging.warning("seed %d %s: energy/floor %.2f (%d combinations), train %.0f s wall %.0f CPU-s", seed, name,
                        r["ratio_to_floor"]["energy"], len(r["per_condition"]), wall, cpu)
    return out


def held_out(adata: ad.AnnData, seed: int, budget: dict = BUDGET) -> dict:
    kept, hidden_rows = hold_out_combination(adata, HIDDEN)
    tr, hidden = adata[kept].copy(), adata[hidden_rows].copy()
    joint, w1, c1 = train(tr, KEYS, seed, budget)
    ct_only, w2, c2 = train(tr, "cell_type", seed, budget)
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


def run_one(row: str, dataset: str, seed: int, smoke: bool, baselines: list[str] = ("cell_type_only",),
            joint: bool = True, budget: dict = BUDGET) -> dict:
    """``per_combination`` (the joint model unless ``joint`` is false, and the ``baselines``) or ``held_out``."""
    torch.set_num_threads(1)
    adata = load(smoke)
    if row == "per_combination":
        return {"per_combination": per_combination(adata, seed, list(baselines), joint, budget)}
    return {"held_out": held_out(adata, seed, budget)}


def _by_seed(result: dict) -> dict:
    """The harness's result -> the older layout ``{"seeds": {seed: {"per_combination", "held_out"}}, ...}``."""
    if "runs" not in result:
        return result
    seeds: dict = {}
    for r in sorted(result["runs"], key=lambda r: r["row"] != "per_combination"):
        seeds.setdefault(str(r["seed"]), {}).update({k: v for k, v in r.items() if k not in ("row", "seed")})
    return {"seeds": seeds, "hidden": HIDDEN, "threads": result["torch_threads"], "wall_s": result.get("wall_s"),
            "cpu_s": result.get("cpu_s")}


def table(result: dict) -> str:
    """The per-combination tables and the held-out combination's table (of the seeds that have them)."""
    results = _by_seed(result)
    lines = []
    print = lines.append  # noqa: A001 (the older script printed these lines)
    seeds = [s for s in results["seeds"].values() if "per_combination" in s]
    print(f"Per combination ({len(seeds)} seeds, mean ± sd): ratio to floor, c2st_knn")
    print("| model | energy / floor | w2 / floor | mmd / floor | c2st_knn | train CPU-s |")
    print("|---|---|---|---|---|---|")
    for name in seeds[0]["per_combination"] if seeds else []:
        rows = [s["per_combination"][name] for s in seeds]
        print(f"| {name} | " + " | ".join(mean_sd([r["ratio_to_floor"][m] for r in rows]) for m in ("energy", "w2", "mmd"))
              + f" | {mean_sd([r['c2st_knn'] for r in rows])} | {mean_sd([r['train_cpu_s'] for r in rows])} |")
    combos = sorted({c for s in seeds for n in s["per_combination"]
                     for c in s["per_combination"][n]["per_combination_energy_ratio"]})
    names = list(seeds[0]["per_combination"]) if seeds else []
    print("\nEnergy / floor per combination (mean over seeds)\n\n| combination | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for c in combos:
        vals = [np.mean([s["per_combination"][n]["per_combination_energy_ratio"][c] for s in seeds
                         if c in s["per_combination"][n]["per_combination_energy_ratio"]]) for n in names]
        print(f"| {c.replace(' | ', ' / ')} | " + " | ".join(f"{v:.2f}" for v in vals) + " |")
    seeds = [s for s in results["seeds"].values() if "held_out" in s]
    if not seeds:
        return "\n".join(lines)
    print(f"\nHeld-out {results['hidden']} (energy vs half the hidden cells; floor: the other half)\n")
    print("| cells | energy / floor | c2st_knn |\n|---|---|---|")
    print(f"| floor (hidden cells' other half) | 1 | {mean_sd([s['held_out']['floor']['c2st_knn'] for s in seeds])} |")
    for name in ("joint", "product", "cell_type_only", "nearest_seen_real"):
        print(f"| {name} | {mean_sd([s['held_out'][name]['energy_ratio'] for s in seeds])} | "
              f"{mean_sd([s['held_out'][name]['c2st_knn'] for s in seeds])} |")
    if results.get("wall_s") is not None:
        print(f"\nwhole run: {results['wall_s']:.0f} s wall, {results['cpu_s']:.0f} CPU-s, {results['threads']} thread(s)")
    return "\n".join(lines)


BENCHMARK = Benchmark(
    rows={"per_combination": {"keys": KEYS}, "held_out": {"keys": KEYS, "hidden": HIDDEN}},
    datasets=("kang2018_ifnb_small_labeled",), run_one=run_one, table=table,
    options={"baselines": ["cell_type_only"], "joint": True, "budget": BUDGET},
    smoke={"budget": {"max_steps": 3, "flow_steps": 3}},
)

if __name__ == "__main__":
    sys.exit(script_main(__file__))
