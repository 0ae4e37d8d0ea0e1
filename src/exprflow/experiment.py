"""One experiment, end to end: split -> train -> generate -> evaluate -> run directory.

Used by ``exprflow demo`` and by the benchmark grid. The run directory holds::

    config.json      resolved configuration, versions, timings
    model/           the trained model (``Model.load``)
    generated.h5ad   generated cells (as many per condition level as the test split holds)
    metrics.json     docs/evaluation.md protocol (model, floor, ratios)
    report.md        run facts, figures and the metrics table (exprflow.run_report, as every command writes)
    umap.png         real (test) vs generated UMAP in the protocol's PCA space
    metrics.png      per-condition metrics beside the floor
    loss.png         training loss curves

    run.json         the run's options and record (status running | complete), as ``exprflow fit`` writes

It is a run directory of :mod:`exprflow.runs.run_dir`, written as ``exprflow fit`` writes one: owned by
one process (``.lock``) from before the data is split, marked ``running`` before training, the model
swapped in whole and the run marked ``complete`` only after every other file is written. An interrupted
or concurrent run therefore never leaves a directory that readers take for a finished one.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import resource
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from anndata import AnnData

from exprflow import __version__
from exprflow.data import prepare_counts, split_indices
from exprflow.metrics import PROTOCOL_VERSION, evaluate
from exprflow.models import MODELS
from exprflow.runs.run_dir import (EXPERIMENT_KEY, REPORT_FILES, check_run_dir, finish_run_dir,
                                     start_run_dir)
from exprflow.runs.run_lock import RunLock
from exprflow.sampling.options import EULER_REFERENCE

logger = logging.getLogger(__name__)

OUTPUT_FILES = ("generated.h5ad", "metrics.json", "config.json", *REPORT_FILES)


@dataclass(frozen=True)
class ExperimentSpec:
    """What to run: the model by registry name, its options and the training budget."""

    model: str = "latent"
    model_kwargs: dict = field(default_factory=dict)
    max_epochs: int | None = None
    max_steps: int | None = None
    batch_size: int | None = None  # None: the model's default
    train_kwargs: dict = field(default_factory=dict)  # model-specific, e.g. {"flow_steps": 4000}
    n_steps: int = EULER_REFERENCE.n_steps  # every model on the same fine grid: equal network evaluations
    solver: str = EULER_REFERENCE.solver
    guidance: float = EULER_REFERENCE.guidance
    seed: int = 0
    split_seed: int = 0


def split_adata(adata: AnnData, layer: str | None, condition_key: str | None, seed: int) -> tuple[AnnData, AnnData]:
    """The split of docs/evaluation.md: 80/20, stratified by the condition, after dropping zero-count cells."""
    data = prepare_counts(adata, layer=layer, condition_key=condition_key, require_counts=True)
    train_idx, test_idx = split_indices(data.n_cells, data.conditions, test_fraction=0.2, seed=seed)
    kept = data.kept
    return adata[kept[train_idx]].copy(), adata[kept[test_idx]].copy()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_experiment(
    adata: AnnData,
    spec: ExperimentSpec,
    out_dir: str | os.PathLike | None,
    *,
    layer: str | None = None,
    condition_key: str | None = None,
    overwrite: bool = False,
    plots: bool = True,
    progress_bar: bool = True,
) -> dict:
    """Run ``spec`` on ``adata`` and (when ``out_dir`` is given) write the run directory; returns the summary.

    ``out_dir`` is locked (:class:`~exprflow.runs.run_lock.RunLock`) before the data is split; it must
    hold no run unless ``overwrite``.
    """
    out = Path(out_dir) if out_dir is not None else None
    with RunLock(out) if out is not None else nullcontext():
        options = {EXPERIMENT_KEY: spec.__dict__, "layer": layer, "condition_key": condition_key}
        if out is not None:
            check_run_dir(out, options, overwrite=overwrite, resume=False, resumable=False)
        train, test = split_adata(adata, layer, condition_key, spec.split_seed)
        model_cls = MODELS.get(spec.model)
        model = model_cls(train, layer=layer, condition_key=condition_key, **spec.model_kwargs)
        if out is not None:  # an old run is marked replaced before training starts
            start_run_dir(out, options, resume=False, outputs=OUTPUT_FILES)
        summary, generated = _train_generate_evaluate(model, spec, train, test, layer, condition_key, progress_bar)
        if out is not None:
            _write_run_dir(out, model, generated, test, train, summary, layer, condition_key, plots)
    return summary


def _train_generate_evaluate(model, spec, train, test, layer, condition_key, progress_bar) -> tuple[dict, AnnData]:
    cpu0, wall0 = _cpu_seconds(), time.perf_counter()
    batch = {} if spec.batch_size is None else {"batch_size": spec.batch_size}
    model.train(max_epochs=spec.max_epochs, max_steps=spec.max_steps, seed=spec.seed, progress_bar=progress_bar,
                **batch, **spec.train_kwargs)
    train_wall, train_cpu = time.perf_counter() - wall0, _cpu_seconds() - cpu0
    if condition_key is not None:
        request = test.obs[condition_key].astype(str).value_counts().to_dict()
        request = {k: int(v) for k, v in request.items() if v > 0}
        cpu0, wall0 = _cpu_seconds(), time.perf_counter()
        generated = model.generate(conditions=request, n_steps=spec.n_steps, solver=spec.solver,
                                   guidance=spec.guidance, seed=spec.seed)
    else:
        cpu0, wall0 = _cpu_seconds(), time.perf_counter()
        generated = model.generate(n_cells=test.n_obs, n_steps=spec.n_steps, solver=spec.solver, seed=spec.seed)
    gen_wall, gen_cpu = time.perf_counter() - wall0, _cpu_seconds() - cpu0
    metrics = evaluate(test, generated, train, layer=layer, condition_key=condition_key, seed=spec.seed)
    summary = {
        "exprflow_version": __version__, "protocol_version": PROTOCOL_VERSION, "spec": spec.__dict__,
        "layer": layer, "condition_key": condition_key, "n_train": train.n_obs, "n_test": test.n_obs,
        "n_genes": train.n_vars, "train_wall_s": train_wall, "train_cpu_s": train_cpu,
        "generate_wall_s": gen_wall, "generate_cpu_s": gen_cpu, "cells_per_s": generated.n_obs / max(gen_wall, 1e-9),
        "nfe": generated.uns["exprflow"]["nfe"], "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(), "torch": torch.__version__, "metrics": metrics,
    }
    return summary, generated


def _write_run_dir(out, model, generated, test, train, summary, layer, condition_key, plots) -> None:
    """Write the outputs into the locked, ``running`` run directory ``out``; the model last, swapped in whole."""
    from exprflow.io import write_h5ad_atomic, write_text_atomic
    from exprflow.run_report import write_report

    write_h5ad_atomic(generated, out / "generated.h5ad")
    write_text_atomic(json.dumps(summary["metrics"], indent=2), out / "metrics.json")
    write_text_atomic(json.dumps({k: v for k, v in summary.items() if k != "metrics"}, indent=2), out / "config.json")
    write_report(out, title=f"exprflow run: model `{summary['spec']['model']}`", facts=run_facts(summary),
                 result=summary["metrics"], model=model, real=test, generated=generated, reference=train,
                 layer=layer, condition_key=condition_key, plots=plots, seed=summary["spec"]["seed"])
    finish_run_dir(out, model)  # marks the run complete
    logger.info("run directory written to %s", out)


def run_facts(summary: dict) -> list[str]:
    """The report's lines on data, training and sampling of one experiment."""
    spec = summary["spec"]
    return [
        f"data: {summary['n_train']} train / {summary['n_test']} test cells x {summary['n_genes']} genes,"
        f" condition key `{summary['condition_key']}`",
        f"training: {summary['train_wall_s']:.1f} s wall, {summary['train_cpu_s']:.1f} CPU-s"
        f" ({summary['torch_threads']} torch threads)",
        f"sampling: {spec['solver']} with {spec['n_steps']} steps ({summary['nfe']} NFE),"
        f" {summary['cells_per_s']:.0f} cells/s",
    ]
