"""``exprflow demo`` (train, generate and evaluate on the bundled PBMC3k data) and ``exprflow fit``."""
from __future__ import annotations

from pathlib import Path

import click

from exprflow.commands.conditions import condition_key_option, parse_condition_keys
from exprflow.commands.options import (DEFAULT_CHECKPOINT_EVERY, build_model_kwargs, build_run_kwargs,
                                       build_train_kwargs, model_options, no_plots_option, parse_json_object)


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True,
              help="Run directory to write.")
@model_options
@no_plots_option
def demo(out, model_name, backbone, backbone_kwargs, likelihood, vae_steps, flow_steps, max_epochs, max_steps, batch_size, seed,
         overwrite, no_plots) -> None:
    """Train on the bundled PBMC3k data (cell-type conditional), generate the test split's cells, evaluate.

    Writes OUT/report.md with its figures (umap.png, metrics.png, loss.png), as every run does. OUT belongs
    to one command at a time (OUT/.lock) and its model is swapped in whole, as with fit (docs/runs.md)."""
    from exprflow.datasets import pbmc3k
    from exprflow.experiment import ExperimentSpec, run_experiment
    from exprflow.runs.run_lock import stop_on_signals

    train = build_train_kwargs(model_name, max_epochs, max_steps, batch_size, vae_steps, flow_steps, seed)
    spec = ExperimentSpec(model=model_name, model_kwargs=build_model_kwargs(model_name, backbone, likelihood, backbone_kwargs),
                          max_epochs=max_epochs, max_steps=max_steps, batch_size=batch_size, seed=seed,
                          train_kwargs={k: v for k, v in train.items() if k in ("vae_steps", "flow_steps")})
    with stop_on_signals():  # SIGTERM / Ctrl-C release OUT/.lock
        summary = run_experiment(pbmc3k(), spec, out, condition_key="cell_type", overwrite=overwrite,
                                 plots=not no_plots)
    _echo_summary(summary, out)


@click.command()
@click.option("--data", "data_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Training data (.h5ad).")
@click.option("--layer", default=None, help="Layer holding raw counts (default: X).")
@condition_key_option
@click.option("--time-key", default=None, help="obs column holding time or pseudotime (time-course models).")
@click.option("--control-group", default=None,
              help="Level of --condition-key that is the control (perturbation models).")
@click.option("--model-kwargs", default=None, metavar="JSON",
              help='Further model options as a JSON object, e.g. \'{"cond_dropout": 0.2}\'.')
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run directory to write.")
@click.option("--accelerator", default="cpu", show_default=True, help="Lightning accelerator: cpu, gpu, auto, ...")
@click.option("--devices", default="1", show_default=True,
              help="Devices (one training process each) per node: a number, 'auto', or GPU ids such as '0,1'.")
@click.option("--num-nodes", type=int, default=1, show_default=True, help="Nodes of a multi-node run (docs/scaling.md).")
@click.option("--strategy", default="auto", show_default=True,
              help="Lightning strategy; 'ddp' for several devices or nodes (gloo on CPU, NCCL on GPUs).")
@click.option("--checkpoint-every", type=int, default=None,
              help=f"Checkpoint every N training steps into OUT/checkpoints (default {DEFAULT_CHECKPOINT_EVERY}; "
                   "0: only at the end of each training phase).")
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out from its last checkpoint "
                                             "(give the same options as when it started).")
@click.option("--backed", is_flag=True,
              help="Keep the count matrix on disk and read it in shuffled blocks (atlases larger than memory; "
                   "docs/out_of_core.md).")
@click.option("--reflow-steps", type=click.IntRange(min=0), default=0, show_default=True,
              help="After training, straighten the flow with this many reflow steps (Liu et al. 2022) so that "
                   "generate defaults to one Euler step; 0: no reflow.")
@model_options
@no_plots_option
def fit(**params) -> None:
    """Train a model on all cells of --data and save it to OUT/model, with OUT/report.md and OUT/loss.png.

    A run is checkpointed to OUT/checkpoints; --resume continues a killed run exactly. OUT belongs to one
    command at a time (OUT/.lock); its model is swapped in whole when training ends (docs/runs.md). With
    several processes (--devices N --strategy ddp, torchrun, srun) only rank 0 writes OUT.
    """
    from contextlib import nullcontext

    from exprflow.runs.run_dir import is_launch_rank_zero
    from exprflow.runs.run_lock import RunLock, stop_on_signals

    # SIGTERM / Ctrl-C release the lock and leave the run resumable; the lock is taken before any data is read
    with stop_on_signals(), RunLock(params["out"]) if is_launch_rank_zero() else nullcontext():
        _fit(**params)


def _fit(data_path, layer, condition_key, time_key, control_group, model_kwargs, out, accelerator, devices, num_nodes,
         strategy, checkpoint_every, resume, backed, reflow_steps, model_name, backbone, backbone_kwargs, likelihood,
         vae_steps, flow_steps, max_epochs, max_steps, batch_size, seed, overwrite, no_plots) -> None:
    import torch

    from exprflow.data import read_adata
    from exprflow.models import MODELS
    from exprflow.runs.run_dir import check_run_dir, finish_run_dir, is_launch_rank_zero, start_run_dir
    from exprflow.run_report import write_report

    condition_key = parse_condition_keys(condition_key)
    kwargs = build_model_kwargs(model_name, backbone, likelihood, backbone_kwargs)
    extra = parse_json_object("--model-kwargs", model_kwargs)
    if isinstance(extra.get("vae"), dict) and "vae" in kwargs:  # --likelihood and --model-kwargs' vae options
        extra["vae"] = {**kwargs["vae"], **extra["vae"]}
    kwargs.update(extra)
    kwargs.update({k: v for k, v in (("time_key", time_key), ("control_group", control_group)) if v is not None})
    train = build_train_kwargs(model_name, max_epochs, max_steps, batch_size, vae_steps, flow_steps, seed)
    devices = int(devices) if devices.lstrip("-").isdigit() else devices
    options = {"data": str(data_path.resolve()), "layer": layer, "condition_key": condition_key, "model": model_name,
               "model_kwargs": kwargs, "train": dict(train), "accelerator": accelerator, "devices": devices,
               "num_nodes": num_nodes, "strategy": strategy, "checkpoint_every": checkpoint_every, "backed": backed}
    checkpoint_dir = check_run_dir(out, options, overwrite=overwrite, resume=resume)
    model_cls = MODELS.get(model_name)
    train.update(build_run_kwargs(accelerator=accelerator, devices=devices, num_nodes=num_nodes,
                             strategy=strategy, checkpoint_dir=str(checkpoint_dir), checkpoint_every=checkpoint_every,
                             resume=resume))
    adata = read_adata(data_path, backed="r" if backed else None)
    model = model_cls(adata, layer=layer, condition_key=condition_key, **kwargs)
    start_run_dir(out, options, resume=resume)  # an old run is marked replaced before training starts
    model.train(**train)
    if reflow_steps:
        model.reflow(steps=reflow_steps, seed=seed)
    if not is_launch_rank_zero():  # the other processes of a multi-process run write nothing
        return
    finish_run_dir(out, model)
    facts = [f"data: {data_path} ({adata.n_obs} cells x {adata.n_vars} genes), counts in "
             f"{'X' if layer is None else 'layers[' + repr(layer) + ']'}, condition key `{condition_key}`",
             f"model: {model_name}, saved to `model/`", f"training: {model.train_seconds:.1f} s wall "
             f"({torch.get_num_threads()} torch threads)"]
    report = write_report(out, title=f"exprflow fit: model `{model_name}`", facts=facts, model=model,
                          plots=not no_plots)
    click.echo(f"model saved to {out / 'model'} (training {model.train_seconds:.1f} s); see {report}")


def _echo_summary(summary: dict, out: Path) -> None:
    ratios = summary["metrics"].get("ratio_to_floor", {})
    m = summary["metrics"]["metrics"]
    click.echo(
        f"run written to {out}\n"
        f"  energy {ratios.get('energy', float('nan')):.2f}x floor, w2 {ratios.get('w2', float('nan')):.2f}x floor, "
        f"c2st_knn {m.get('c2st_knn', float('nan')):.3f}, label accuracy {m.get('label_accuracy', float('nan'))}\n"
        f"  training {summary['train_wall_s']:.1f} s, sampling {summary['cells_per_s']:.0f} cells/s; see {out / 'report.md'}"
    )



COMMANDS = [demo, fit]
