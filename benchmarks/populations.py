"""Cells as tokens (issue 7 part 2): generating a population of N cells jointly vs independently.

Usage::

    nice -n 10 python -m benchmarks populations --seeds 0 1 2 --jobs 3    # the seeds in parallel
    python -m benchmarks populations --table benchmarks/results/populations_kang_small.json   # an older result
    python -m benchmarks populations --smoke        # seconds: --set vae_steps=20 flow_steps=20 on the bundled subset

Data: kang2018_ifnb_small_labeled (1,556 cells x 1,267 genes, 5 cell types, 4 samples = 2 donors x
ctrl/stim), EVALUATION.md split (80/20 stratified by ``sample_id``, seed 0). A *population* is N = 64
train cells of one sample (``sample_id`` is the group and the model's condition), drawn two ways:

- ``subsets``:   uniformly without replacement (composition varies only by sampling);
- ``dirichlet``: cell-type proportions ~ Dirichlet(10 * the sample's proportions), then cells of each
  type (bootstrapped when the sample has too few): composition is a population-level variable.

Rows (ONE trained VAE per seed, shared by every row: loaded into each model before its flow phase,
LatentFlow's with ``train(max_steps=0)``, and checked unchanged after; every flow sees 256 cells per
step for FLOW_STEPS):

- ``population``:  PopulationFlow, N = 64, 4 populations per step, trained on that experiment's populations;
- ``independent``: the same cell_set backbone trained on populations of ONE cell (256 per step):
  the same N cells generated independently, with the same VAE, backbone and budget;
- ``latent``:      LatentFlow (MLP backbone), the project's per-cell model, N cells generated independently;
- ``real``:        a second draw of real train populations (the finite-sample floor of each number).

Composition: every cell (real or generated) gets a cell type from the protocol's label classifier
(logistic regression on the 30 PCs, fitted on real train cells with their cell_type). Per sample:
``tv_mean`` = total variation between the mean composition of 20 generated populations and the
composition of the real held-out (test) cells of that sample; ``spread_ratio`` = mean over cell types of
the sd of a type's proportion across generated populations, divided by the same sd across 20 real
train populations drawn by the experiment's sampler; ``comp_energy`` = energy distance between the
generated and the real populations' composition vectors. All averaged over the 4 samples.
Protocol metrics (ratios to floor): the first n_test(sample) generated cells of each sample against
the real test cells, ``evaluate(..., condition_key="sample_id")``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from bench_common import cpu_seconds, load, mean_sd, save_figure
from harness import Benchmark, script_main

DATASET = "kang2018_ifnb_small_labeled"
GROUP, TYPE = "sample_id", "cell_type"
N = 64
POPS_PER_STEP = 4  # populations of N per flow step: 256 cells, LatentFlow's default flow batch
VAE_STEPS, FLOW_STEPS = 500, 600
N_EVAL_POPS = 20  # populations per sample for the composition metrics
CONCENTRATION = 10.0
VAE = {"n_hidden": 128, "n_latent": 10}
CELL_SET = {"width": 64, "depth": 3, "n_heads": 4}
MLP = {"hidden": 128, "depth": 3}
EXPERIMENTS = {"subsets": None, "dirichlet": CONCENTRATION}
ROWS = ["population", "independent", "latent", "real"]


def _params(module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def _compositions(pred: np.ndarray, types: list[str]) -> np.ndarray:
    """Predicted labels ``(P, N)`` (strings) -> proportions ``(P, n_types)``."""
    from exprflow.data.populations import population_composition

    index = {t: k for k, t in enumerate(types)}
    return population_composition(np.vectorize(index.get)(pred), len(types))


def composition_metrics(gen: dict, real: dict, test_comp: dict) -> dict:
    """``gen``/``real``: sample -> compositions (P, K); ``test_comp``: sample -> (K,). Averages over samples."""
    from exprflow.metrics import energy

    tv, spread, comp_e = [], [], []
    for g in gen:
        tv.append(0.5 * np.abs(gen[g].mean(0) - test_comp[g]).sum())
        spread.append(gen[g].std(0, ddof=1).mean() / max(real[g].std(0, ddof=1).mean(), 1e-12))
        comp_e.append(energy(gen[g], real[g]))
    return {"tv_mean": float(np.mean(tv)), "spread_ratio": float(np.mean(spread)),
            "comp_energy": float(np.mean(comp_e)),
            "spread": float(np.mean([gen[g].std(0, ddof=1).mean() for g in gen]))}


def run_seed(seed: int, vae_steps: int = VAE_STEPS, flow_steps: int = FLOW_STEPS, smoke: bool = False) -> dict:
    """Train the rows for one seed and score them (in this process, 1 torch thread)."""
    import anndata as ad
    import torch

    from exprflow.data.populations import population_sampler
    from exprflow.experiment import split_adata
    from exprflow.metrics import ReferenceSpace, evaluate
    from exprflow.metrics.labels import fit_label_classifier
    from exprflow.models import LatentFlow, PopulationFlow

    torch.set_num_threads(1)
    adata = load(DATASET, smoke)
    train, test = split_adata(adata, None, GROUP, 0)
    samples = sorted(train.obs[GROUP].astype(str).unique())
    types = sorted(train.obs[TYPE].astype(str).unique())
    space = ReferenceSpace(30).fit(train.X)
    clf = fit_label_classifier(space.transform(train.X), train.obs[TYPE].astype(str).to_numpy())

    def predict(X) -> np.ndarray:
        return clf.predict(space.transform(X))

    train_pred = predict(train.X)
    test_pred = predict(test.X)
    test_groups = test.obs[GROUP].astype(str).to_numpy()
    accuracy = float(np.mean(test_pred == test.obs[TYPE].astype(str).to_numpy()))
    out = {"seed": seed, "vae_steps": vae_steps, "flow_steps": flow_steps, "classifier_test_accuracy": accuracy,
           "n_train": train.n_obs, "n_test": test.n_obs, "rows": {}, "train": {}}
    test_comp = {g: _compositions(test_pred[test_groups == g][None, :], types)[0] for g in samples}
    n_test = {g: int((test_groups == g).sum()) for g in samples}

    # real populations: a reference draw (for spread / comp_energy) and a second draw (the "real" row)
    real_ref, real_row = {}, {}
    for exp, conc in EXPERIMENTS.items():
        sampler = population_sampler(train.obs, GROUP, N, composition_key=TYPE, concentration=conc)
        codes = {g: k for k, g in enumerate(samples)}
        for store, rng_seed in ((real_ref, 1), (real_row, 2)):
            rng = np.random.default_rng([seed, rng_seed])
            store[exp] = {g: _compositions(train_pred[sampler.draw_many(rng, N_EVAL_POPS, codes[g])[0]], types)
                          for g in samples}

    def timed(label, fn):
        w, c = time.perf_counter(), cpu_seconds()
        model = fn()
        out["train"][label] = {"wall_s": time.perf_counter() - w, "cpu_s": cpu_seconds() - c,
                               "flow_params": _params(model.backbone)}
        return model

    common = dict(condition_key=GROUP, vae=VAE)
    torch.manual_seed(seed)
    pop = {"subsets": timed("population:subsets", lambda: PopulationFlow(
        train, population_size=N, backbone_kwargs=CELL_SET, **common).train(
        max_steps=vae_steps, flow_steps=flow_steps, flow_batch_size=POPS_PER_STEP, seed=seed, progress_bar=False))}
    vae_state = pop["subsets"].vae.state_dict()

    def on_shared_vae(**kw):
        torch.manual_seed(seed)
        model = PopulationFlow(train, backbone_kwargs=CELL_SET, **common, **kw)
        model.vae.load_state_dict(vae_state)
        return model

    pop["dirichlet"] = timed("population:dirichlet", lambda: on_shared_vae(
        population_size=N, composition_key=TYPE, concentration=CONCENTRATION).train_flow(
        flow_steps, POPS_PER_STEP, seed=seed, progress_bar=False))
    independent = timed("independent", lambda: on_shared_vae(population_size=1).train_flow(
        flow_steps, POPS_PER_STEP * N, seed=seed, progress_bar=False))
    def latent_on_shared_vae():
        torch.manual_seed(seed)
        model = LatentFlow(train, backbone_kwargs=MLP, **common)
        model.vae.load_state_dict(vae_state)
        # max_steps=0: no VAE step, so LatentFlow's flow phase runs on the very same VAE
        return model.train(max_steps=0, flow_steps=flow_steps, flow_batch_size=POPS_PER_STEP * N, seed=seed,
                           progress_bar=False)

    latent = timed("latent", latent_on_shared_vae)
    out["latent_vae_identical"] = all(torch.equal(v, latent.vae.state_dict()[k]) for k, v in vae_state.items())

    def populations(model, population_size) -> ad.AnnData:
        """N_EVAL_POPS populations of N cells per sample, in sample order (independent: N_EVAL_POPS*N cells)."""
        if isinstance(model, PopulationFlow):
            k = N_EVAL_POPS * N // population_size
            return model.generate_populations(k * len(samples), condition={g: k for g in samples},
                                              population_size=population_size, seed=seed)
        return model.generate(conditions={g: N_EVAL_POPS * N for g in samples}, seed=seed)

    def score(generated: ad.AnnData, exp: str) -> dict:
        pred = predict(generated.X).reshape(len(samples), N_EVAL_POPS, N)  # sample-major, N cells per population
        gen = {g: _compositions(pred[i], types) for i, g in enumerate(samples)}
        return composition_metrics(gen, real_ref[exp], test_comp)

    def protocol(generated: ad.AnnData) -> dict:
        groups = generated.obs[GROUP].astype(str).to_numpy()
        rows = np.concatenate([np.flatnonzero(groups == g)[: n_test[g]] for g in samples])
        return evaluate(test, generated[rows].copy(), train, condition_key=GROUP, seed=seed)

    generated = {"independent": populations(independent, 1), "latent": populations(latent, N)}
    for exp in EXPERIMENTS:
        generated[f"population:{exp}"] = populations(pop[exp], N)
        res = out["rows"].setdefault(exp, {})
        res["population"] = score(generated[f"population:{exp}"], exp)
        res["independent"] = score(generated["independent"], exp)
        res["latent"] = score(generated["latent"], exp)
        res["real"] = composition_metrics(real_row[exp], real_ref[exp], test_comp)
    out["protocol"] = {name: protocol(g) for name, g in generated.items()}
    out["torch_threads"] = torch.get_num_threads()
    return out


METRICS = [("tv_mean", "composition TV to held-out"), ("spread_ratio", "spread / real spread"),
           ("spread", "spread (sd of a type's share)"), ("comp_energy", "composition energy distance")]
PROTOCOL = [("energy", True), ("w2", True), ("mmd", True), ("coverage", True), ("c2st_knn", False),
            ("label_accuracy", False), ("dcr", False)]


def markdown(result: dict) -> str:
    runs = result["runs"]
    lines = [f"{result.get('dataset', DATASET)}, N = {N}, seeds {[r['seed'] for r in runs]}, torch threads "
             f"{runs[0]['torch_threads']}; mean ± sd over seeds", ""]
    for exp in EXPERIMENTS:
        lines += [f"**Populations: {exp}**", "", "| metric | " + " | ".join(ROWS) + " |", "|---|" + "---|" * len(ROWS)]
        for key, label in METRICS:
            cells = [mean_sd(r["rows"][exp][row][key] for r in runs) for row in ROWS]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    names = list(runs[0]["protocol"])
    lines += ["**Protocol metrics** (generated cells of each sample vs its real test cells; ratios to the floor)", "",
              "| metric | " + " | ".join(names) + " | floor |", "|---|" + "---|" * (len(names) + 1)]
    for key, ratio in PROTOCOL:
        get = (lambda p, k=key: p["ratio_to_floor"].get(k)) if ratio else (lambda p, k=key: p["metrics"].get(k))
        floor = "1" if ratio else mean_sd(r["protocol"][names[0]]["floor"].get(key) for r in runs)
        lines.append(f"| {key}{' / floor' if ratio else ''} | "
                     + " | ".join(mean_sd(get(r["protocol"][n]) for r in runs) for n in names) + f" | {floor} |")
    lines += ["", "| training | wall s | CPU s | flow parameters |", "|---|---|---|---|"]
    for label in runs[0]["train"]:
        t = [r["train"][label] for r in runs]
        lines.append(f"| {label} | {mean_sd(x['wall_s'] for x in t)} | {mean_sd(x['cpu_s'] for x in t)} | "
                     f"{t[0]['flow_params']:,} |")
    accuracy = mean_sd(r["classifier_test_accuracy"] for r in runs)
    lines += ["", f"label classifier accuracy on real test cells: {accuracy}; "
              f"every row on the same VAE (checked): {all(r['latent_vae_identical'] for r in runs)}; "
              f"total benchmark wall {result.get('wall_s', 0):.0f} s, CPU {result.get('cpu_s', 0):.0f} s"]
    return "\n".join(lines)


def figure(result: dict, path: Path) -> None:
    """Composition spread and error per row (mean ± sd over seeds), one panel per experiment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    fig, axes = plt.subplots(1, 2 * len(EXPERIMENTS), figsize=(4.2 * 2 * len(EXPERIMENTS), 3.4))
    for e, exp in enumerate(EXPERIMENTS):
        for a, (key, label) in enumerate([("spread", "spread (sd of a type's share)"),
                                          ("tv_mean", "composition TV to held-out")]):
            ax = axes[2 * e + a]
            values = np.array([[r["rows"][exp][row][key] for r in runs] for row in ROWS])
            ax.bar(ROWS, values.mean(1), yerr=values.std(1, ddof=1) if len(runs) > 1 else None,
                   color=["tab:blue", "tab:orange", "tab:green", "tab:gray"], capsize=3)
            ax.set_title(f"{exp}: {label}", fontsize=9)
            ax.tick_params(axis="x", labelsize=8)
    save_figure(fig, path, f"kang-small, populations of N = {N} cells, {len(runs)} seeds", fontsize=10)


def run_one(row: str, dataset: str, seed: int, smoke: bool, vae_steps: int = VAE_STEPS,
            flow_steps: int = FLOW_STEPS) -> dict:
    """Every row of one seed (they share one VAE): :func:`run_seed`."""
    return run_seed(seed, vae_steps, flow_steps, smoke)


BENCHMARK = Benchmark(
    rows={"all": {"rows": ROWS, "N": N, "pops_per_step": POPS_PER_STEP, "vae": VAE, "cell_set": CELL_SET,
                  "mlp": MLP}},
    datasets=(DATASET,), run_one=run_one, table=markdown, figure=figure,
    options={"vae_steps": VAE_STEPS, "flow_steps": FLOW_STEPS}, smoke={"vae_steps": 3, "flow_steps": 3},
)

if __name__ == "__main__":
    sys.exit(script_main(__file__))
