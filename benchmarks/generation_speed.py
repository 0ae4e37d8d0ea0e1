"""Generation and training near the machine's limit: cells/s vs evaluations vs quality, the ratio of a whole
``generate`` to one dense Gamma-Poisson draw, and training CPU-seconds idle vs beside a competing process.

Usage (a harness row is a section; the sections share trained models cached under the option ``cache``;
run them with ``--jobs 1``; the published figures used 2 threads)::

    python -m benchmarks generation_speed --threads 2 --rows models pareto speed ratio training
    python -m benchmarks generation_speed --threads 2 --rows cuda          # on a GPU machine
    python -m benchmarks generation_speed --table benchmarks/results/generation_speed.json   # an older result

Sections:

- ``models``: LatentFlow (its defaults) trained on the 80 % split of PBMC3k, seed 0, cached under
  ``cache``, and one reflowed copy of it. The kang2018_ifnb model (for throughput, trained by the
  ``ratio`` section when missing) can have a cut budget: options ``kang_vae_steps``, ``kang_flow_steps``.
- ``pareto``: for each sampler (solver, steps; base and reflowed model) the protocol metrics on the test
  split's request for the harness seed as generation/evaluation seed (one trained model: the spread is
  that of sampling and evaluation, not of training).
- ``speed``: the cells/s of ``generate(n_cells=n_cells)`` for each of those samplers (the Pareto figure is
  the harness's figure of the merged results).
- ``ratio``: the whole ``generate`` of ``n_cells`` cells vs ONE dense torch Gamma-Poisson draw of the
  same n x G decoder means, in the same process, medians of ``repeats``.
- ``training``: CPU-seconds of a short LatentFlow fit, alone and beside a competing 2-thread process,
  with the automatic thread choice and with every step on 2 threads (PyTorch's default here).
- ``cuda``: generation on a GPU: recorded as skipped with its reason (no device here; ``generate`` has
  no device option yet).

Every timing records wall and CPU seconds, the thread count and the load average (the machine may be
shared: per-core rates are ``cells / CPU-second``).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import DATASETS, cpu_seconds, load, mean_sd, save_figure  # noqa: E402
from harness import Benchmark, script_main  # noqa: E402

HERE = Path(__file__).resolve().parent
SAMPLERS = [("euler", 16), ("heun", 4), ("euler", 4), ("euler", 2), ("euler", 1)]
REFLOW_SAMPLERS = [("euler", 1), ("euler", 2)]
QUALITY = ["w2", "mmd", "energy", "coverage"]


def _load() -> float:
    return os.getloadavg()[0]


def _timed(fn, *args, **kwargs):
    import torch

    c0, w0, l0 = cpu_seconds(), time.perf_counter(), _load()
    value = fn(*args, **kwargs)
    return value, {"wall_s": time.perf_counter() - w0, "cpu_s": cpu_seconds() - c0, "load_before": l0,
                   "load_after": _load(), "torch_threads": torch.get_num_threads()}


def _split(dataset: str, smoke: bool = False):
    from exprflow.experiment import split_adata

    key = DATASETS[dataset][1]
    train, test = split_adata(load(dataset, smoke), None, key, 0)
    return train, test, key


def _model_path(cache: Path, dataset: str, seed: int, reflow: bool = False) -> Path:
    return cache / f"{dataset}_seed{seed}{'_reflow' if reflow else ''}"


def section_models(args, result: dict) -> None:
    from exprflow.models import LatentFlow

    out = result.setdefault("models", {})
    _train_model(args, "pbmc3k", out)
    path = _model_path(args.cache, "pbmc3k", 0, reflow=True)
    if not path.exists():
        model = LatentFlow.load(str(_model_path(args.cache, "pbmc3k", 0)))
        _, t = _timed(model.reflow, n_pairs=args.reflow_pairs, steps=args.reflow_steps, seed=0, progress_bar=False)
        model.save(str(path), overwrite=True)
        out["pbmc3k_reflow"] = {**t, "n_pairs": args.reflow_pairs, "steps": args.reflow_steps}


def _train_model(args, dataset: str, out: dict) -> None:
    """Train (once, cached) the seed-0 LatentFlow of ``dataset``; kang2018_ifnb with the cut budget of
    ``--kang-vae-steps`` / ``--kang-flow-steps`` where given (for throughput only)."""
    from exprflow.models import LatentFlow

    path = _model_path(args.cache, dataset, 0)
    if path.exists():
        return
    budget = ({"max_steps": args.kang_vae_steps, "flow_steps": args.kang_flow_steps} if dataset != "pbmc3k" else
              {"max_steps": args.pbmc_vae_steps, "flow_steps": args.pbmc_flow_steps})
    budget = {k: v for k, v in budget.items() if v is not None}
    train, _, key = _split(dataset, args.smoke)
    model = LatentFlow(train, condition_key=key)
    _, t = _timed(model.train, seed=0, progress_bar=False, **budget)
    model.save(str(path), overwrite=True)
    out[f"{dataset}_seed0"] = {**t, "budget": budget or "default"}
    logging.warning("trained %s: %s", dataset, t)


def _rate(model, n_cells: int, solver: str, n_steps: int, repeats: int) -> dict:
    runs = []
    for r in range(repeats):
        _, t = _timed(model.generate, n_cells=n_cells, n_steps=n_steps, solver=solver, seed=100 + r)
        runs.append(t)
    wall = float(np.median([t["wall_s"] for t in runs]))
    cpu = float(np.median([t["cpu_s"] for t in runs]))
    return {"cells_per_s": n_cells / wall, "cells_per_cpu_s": n_cells / cpu, "wall_s": wall, "cpu_s": cpu,
            "load": [t["load_before"] for t in runs], "torch_threads": runs[0]["torch_threads"]}


def section_pareto(args, result: dict) -> None:
    from exprflow.metrics import evaluate
    from exprflow.models import LatentFlow

    section_models(args, result)  # the cached models (trained once)
    train, test, key = _split("pbmc3k", args.smoke)
    request = {k: int(v) for k, v in test.obs[key].astype(str).value_counts().items() if v > 0}
    rows = result.setdefault("pareto", [])
    done = {(r["model"], r["solver"], r["n_steps"], r["seed"]) for r in rows}
    plan = [("base", s, solver, n) for s in args.seeds for solver, n in SAMPLERS]
    plan += [("reflow", s, solver, n) for s in args.seeds for solver, n in REFLOW_SAMPLERS]
    for kind, seed, solver, n_steps in plan:
        if (kind, solver, n_steps, seed) in done:
            continue
        model = LatentFlow.load(str(_model_path(args.cache, "pbmc3k", 0, reflow=kind == "reflow")))
        generated = model.generate(conditions=request, n_steps=n_steps, solver=solver, seed=seed)
        metrics = evaluate(test, generated, train, condition_key=key, seed=seed)
        row = {"model": kind, "seed": seed, "solver": solver, "n_steps": n_steps,
               "nfe": generated.uns["exprflow"]["nfe"], "ratio_to_floor": metrics["ratio_to_floor"],
               "c2st_knn": metrics["metrics"]["c2st_knn"], "pearson_var": metrics["metrics"]["pearson_var"]}
        rows.append(row)
        _save(args.out, result)
        logging.warning("%s seed %d %s x%d: energy %.2f", kind, seed, solver, n_steps, row["ratio_to_floor"]["energy"])


def section_speed(args, result: dict) -> None:
    """Cells/s of ``generate(n_cells=--n-cells)`` for every sampler of the quality rows, then the figure."""
    from exprflow.models import LatentFlow

    section_models(args, result)  # the cached models (trained once)
    speeds = result.setdefault("speed", {})
    for kind, samplers in (("base", SAMPLERS), ("reflow", REFLOW_SAMPLERS)):
        model = LatentFlow.load(str(_model_path(args.cache, "pbmc3k", 0, reflow=kind == "reflow")))
        for solver, n_steps in samplers:
            speeds[f"{kind} {solver} {n_steps}"] = _rate(model, args.n_cells, solver, n_steps, args.repeats)
            _save(args.out, result)
            logging.warning("%s %s x%d: %s", kind, solver, n_steps, speeds[f"{kind} {solver} {n_steps}"])


def _dense_draw_seconds(model, n_cells: int, seed: int) -> tuple[dict, int]:
    import torch

    from exprflow.distributions import NegativeBinomial

    states, _ = model.sample_states(None, n_cells, n_steps=1, solver="euler", guidance=1.0,
                                    generator=torch.Generator().manual_seed(seed))
    s = states.numpy() * model.state_std + model.state_mean
    library = np.exp(np.clip(s[:, -1], *model.log_library_range))
    with torch.no_grad():
        px = model.vae.decode(torch.from_numpy(s[:, :-1].astype(np.float32)), torch.from_numpy(library.astype(np.float32)))
    px = NegativeBinomial(px.mu, px.theta)  # the dense Gamma-Poisson draw of the same means
    torch.manual_seed(seed)
    counts, t = _timed(px.sample)
    return t, int((counts > 0).sum())


def section_ratio(args, result: dict) -> None:
    import torch

    from exprflow.models import LatentFlow

    rows = result.setdefault("ratio", {})
    _train_model(args, "pbmc3k", result.setdefault("models", {}))
    _train_model(args, "kang2018_ifnb", result["models"])
    for dataset, n_cells in (("pbmc3k", args.n_cells), ("kang2018_ifnb", args.n_cells_kang)):
        model = LatentFlow.load(str(_model_path(args.cache, dataset, 0)))
        gen = [_rate(model, n_cells, args.solver, args.n_steps, 1) for _ in range(args.repeats)]
        dense = [_dense_draw_seconds(model, n_cells, seed=r)[0] for r in range(args.repeats)]
        gen_wall = float(np.median([g["wall_s"] for g in gen]))
        dense_wall = float(np.median([d["wall_s"] for d in dense]))
        rows[dataset] = {
            "n_cells": n_cells, "n_genes": len(model.var_names), "solver": args.solver, "n_steps": args.n_steps,
            "generate_wall_s": gen_wall, "generate_cpu_s": float(np.median([g["cpu_s"] for g in gen])),
            "cells_per_s": n_cells / gen_wall, "dense_draw_wall_s": dense_wall,
            "dense_draw_cpu_s": float(np.median([d["cpu_s"] for d in dense])),
            "generate_over_dense": gen_wall / dense_wall, "load": [g["load"] for g in gen],
            "torch_threads": torch.get_num_threads(), "cores": len(os.sched_getaffinity(0)),
        }
        _save(args.out, result)
        logging.warning("%s: %s", dataset, rows[dataset])


_COMPETITOR = ("import torch, time\ntorch.set_num_threads(2)\na = torch.randn(600, 600)\nend = time.time() + {s}\n"
               "while time.time() < end:\n    a = torch.tanh(a @ a / 600)\n")


def _fit_cpu(threads_mode: str, competing: bool, vae_steps: int, flow_steps: int, smoke: bool = False) -> dict:
    """CPU-seconds of a short LatentFlow fit in a child process (2 PyTorch threads available)."""
    code = ("import json, resource, time, torch\nimport exprflow\nfrom exprflow.models import LatentFlow\n"
            f"import sys; sys.path.insert(0, {str(HERE)!r})\nfrom generation_speed import _split\n"
            f"exprflow.settings.num_threads = {2 if threads_mode == 'all-2' else None}\n"
            f"train, _, key = _split('pbmc3k', {smoke})\nm = LatentFlow(train, condition_key=key)\n"
            "u0 = resource.getrusage(resource.RUSAGE_SELF); w0 = time.perf_counter()\n"
            f"m.train(max_steps={vae_steps}, flow_steps={flow_steps}, progress_bar=False)\n"
            "u1 = resource.getrusage(resource.RUSAGE_SELF)\n"
            "print(json.dumps({'wall_s': time.perf_counter() - w0, 'cpu_s': u1.ru_utime + u1.ru_stime - "
            "u0.ru_utime - u0.ru_stime, 'vae_s': m.vae_seconds}))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    competitor = None
    if competing:
        competitor = subprocess.Popen([sys.executable, "-c", _COMPETITOR.format(s=3600)], env=env)
        time.sleep(2)
    try:
        load = _load()
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "load_before": load, "threads": threads_mode,
            "competing": competing}


def section_training(args, result: dict) -> None:
    rows = result.setdefault("training", [])
    for mode in ("auto", "all-2"):
        for competing in (False, True):
            if any(r["threads"] == mode and r["competing"] == competing for r in rows):
                continue
            rows.append(_fit_cpu(mode, competing, args.train_vae_steps, args.train_flow_steps, args.smoke))
            rows[-1].update(vae_steps=args.train_vae_steps, flow_steps=args.train_flow_steps)
            _save(args.out, result)
            logging.warning("training: %s", rows[-1])


def section_cuda(args, result: dict) -> None:
    """Recorded as skipped, with the reason: no CUDA device here, and ``generate`` runs on the CPU so far."""
    import torch

    reason = ("no CUDA device on the machine that ran this section" if not torch.cuda.is_available() else
              "generate() has no device option yet: the flow, decoder and count sampler run on the CPU")
    result["cuda"] = {"skipped": reason, "device_requested": args.device}


def figure(result: dict, path: Path) -> None:
    """The Pareto figure (speed vs evaluations vs quality) of merged results with pareto and speed rows."""
    result = _merged(result)
    if result.get("pareto") and result.get("speed"):
        _pareto_figure(result["pareto"], result["speed"], path)


def _pareto_figure(rows: list[dict], speeds: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for kind, marker in (("base", "o"), ("reflow", "s")):
        keys = [k for k in dict.fromkeys((r["solver"], r["n_steps"], r["nfe"]) for r in rows if r["model"] == kind)
                if f"{kind} {k[0]} {k[1]}" in speeds]
        if not keys:
            continue
        rate = [speeds[f"{kind} {solver} {n}"]["cells_per_cpu_s"] for solver, n, _ in keys]  # shared machine
        axes[0].scatter([nfe for *_, nfe in keys], rate, marker=marker, label=kind)
        energy = [np.mean([q["ratio_to_floor"]["energy"] for q in rows if q["model"] == kind and
                           (q["solver"], q["n_steps"]) == (solver, n)]) for solver, n, _ in keys]
        axes[1].scatter(rate, energy, marker=marker, label=kind)
        for (solver, n, _), x, e in zip(keys, rate, energy):
            axes[1].annotate(f"{solver} {n}", (x, e), fontsize=7)
    axes[0].set(xlabel="function evaluations", ylabel="generated cells per CPU-second", xscale="log", yscale="log")
    axes[1].set(xlabel="generated cells per CPU-second (counts, AnnData out)", ylabel="energy / floor (mean over seeds)",
                xscale="log")
    axes[1].legend()
    save_figure(fig, path, "PBMC3k LatentFlow: speed vs evaluations vs quality")


def _merged(result: dict) -> dict:
    """The harness's result (a run per section and seed) -> the older one-file layout (sections as keys)."""
    if "runs" not in result:
        return result
    merged: dict = {"torch_threads": result.get("torch_threads")}
    for run in result["runs"]:
        for key, value in run.items():
            if isinstance(value, list):
                merged.setdefault(key, []).extend(value)
            elif isinstance(value, dict) and key not in ("cuda",):
                merged.setdefault(key, {}).update(value)
            elif key not in ("row", "seed", "torch_threads"):
                merged[key] = value
    return merged


def markdown(result: dict) -> str:
    """The BENCHMARKS.md tables of a results file (older) or of the harness's merged sections."""
    result = _merged(result)
    lines = [f"cores available: {result.get('cores')}, torch threads: {result.get('torch_threads')}", ""]
    rows = result.get("pareto", [])
    if rows:
        lines += ["| model | sampler | NFE | " + " | ".join(f"{q} / floor" for q in QUALITY)
                  + " | c2st_knn | cells/s (wall) | cells per CPU-s |", "|---|---|---|---|---|---|---|---|---|---|"]
        keys = list(dict.fromkeys((r["model"], r["solver"], r["n_steps"]) for r in rows))
        for kind, solver, n in keys:
            sub = [r for r in rows if (r["model"], r["solver"], r["n_steps"]) == (kind, solver, n)]
            ms = lambda get: mean_sd([get(r) for r in sub])  # noqa: E731
            speed = result.get("speed", {}).get(f"{kind} {solver} {n}")
            rate = f"{speed['cells_per_s']:,.0f} | {speed['cells_per_cpu_s']:,.0f}" if speed else "| "
            lines.append(f"| {kind} | {solver} {n} | {sub[0]['nfe']} | "
                         + " | ".join(ms(lambda r, q=q: r["ratio_to_floor"][q]) for q in QUALITY)
                         + f" | {ms(lambda r: r['c2st_knn'])} | {rate} |")
        lines.append("")
    ratio = result.get("ratio", {})
    if ratio:
        lines += ["| model | cells x genes | sampler | generate wall s | generate CPU s | cells/s | dense draw wall s "
                  "| dense draw CPU s | generate / dense |", "|---|---|---|---|---|---|---|---|---|"]
        for name, r in ratio.items():
            lines.append(f"| {name} | {r['n_cells']:,} x {r['n_genes']:,} | {r['solver']} {r['n_steps']} | "
                         f"{r['generate_wall_s']:.2f} | {r['generate_cpu_s']:.2f} | {r['cells_per_s']:,.0f} | "
                         f"{r['dense_draw_wall_s']:.2f} | {r['dense_draw_cpu_s']:.2f} | {r['generate_over_dense']:.2f} |")
        lines.append("")
    training = result.get("training", [])
    if training:
        lines += ["| threads | beside a 2-thread process | wall s | CPU s | load before |", "|---|---|---|---|---|"]
        for r in training:
            lines.append(f"| {r['threads']} | {'yes' if r['competing'] else 'no'} | {r['wall_s']:.1f} | "
                         f"{r['cpu_s']:.1f} | {r['load_before']:.1f} |")
        lines.append("")
    if "cuda" in result:
        lines.append(f"GPU: {result['cuda']}")
    return "\n".join(lines)


def _save(path: Path | None, result: dict) -> None:
    """The older script saved its one results file after every step; on the harness a section returns it."""


SECTIONS = {"models": section_models, "pareto": section_pareto, "speed": section_speed, "ratio": section_ratio,
            "training": section_training, "cuda": section_cuda}
OPTIONS = {"cache": "/tmp/exprflow_generation_speed", "n_cells": 20_000, "n_cells_kang": 5_000, "repeats": 3,
           "solver": "heun", "n_steps": 4, "kang_vae_steps": None, "kang_flow_steps": None, "pbmc_vae_steps": None,
           "pbmc_flow_steps": None, "reflow_pairs": 20_000, "reflow_steps": 2000, "train_vae_steps": 300,
           "train_flow_steps": 600, "device": "cpu"}


def run_one(row: str, dataset: str, seed: int, smoke: bool, **options) -> dict:
    """One section (``row``); ``pareto`` uses ``seed`` as its generation/evaluation seed. Smoke: a fresh cache."""
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        args = SimpleNamespace(**{**OPTIONS, **options}, seeds=[seed], smoke=smoke, out=None)
        args.cache = Path(tmp if smoke else args.cache)
        args.cache.mkdir(parents=True, exist_ok=True)
        result = {"cores": len(os.sched_getaffinity(0)), "torch_threads": torch.get_num_threads()}
        SECTIONS[row](args, result)
    return result


BENCHMARK = Benchmark(
    rows={name: {"section": name} for name in SECTIONS}, datasets=("pbmc3k",), run_one=run_one, table=markdown,
    figure=figure, options=OPTIONS, default_rows=("models", "pareto", "speed", "ratio", "training"),
    once_rows=("models", "speed", "ratio", "training", "cuda"),
    smoke={"n_cells": 200, "n_cells_kang": 100, "repeats": 1, "kang_vae_steps": 3, "kang_flow_steps": 3,
           "pbmc_vae_steps": 3, "pbmc_flow_steps": 3, "reflow_pairs": 200, "reflow_steps": 3, "train_vae_steps": 3,
           "train_flow_steps": 3},
    smoke_rows=("pareto", "speed", "ratio", "training", "cuda"),
)

if __name__ == "__main__":
    sys.exit(script_main(__file__))
