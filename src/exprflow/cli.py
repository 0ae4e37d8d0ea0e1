"""Command-line interface: ``exprflow demo | fit | generate | embed | evaluate`` and the commands of
:mod:`exprflow.commands` (one module each, found at start-up).

User errors (bad data, bad options) print one paragraph to stderr and exit with code 2; no traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from exprflow.errors import ExprflowInputError

logger = logging.getLogger("exprflow")


class _Group(click.Group):
    """Turns :class:`ExprflowInputError` into a clean message and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ExprflowInputError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("exprflow").setLevel(logging.INFO)
    for noisy in ("lightning", "lightning.pytorch", "lightning.fabric", "numba", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Also log third-party INFO messages.")
@click.version_option(package_name="exprflow")
def cli(verbose: bool) -> None:
    """exprflow: generative models of single-cell gene expression (rectified flows)."""
    _configure_logging(verbose)


def _model_options(f):
    from exprflow.backbones import BACKBONES
    from exprflow.distributions import LIKELIHOODS
    from exprflow.models import MODELS

    f = click.option("--model", "model_name", default="latent", show_default=True, type=click.Choice(MODELS.names()),
                     help="Model (representation + objective).")(f)
    f = click.option("--backbone", default=None, type=click.Choice(BACKBONES.names()),
                     help="Backbone network of the flow (default: the model's own, mlp for latent/state).")(f)
    f = click.option("--backbone-kwargs", default=None, metavar="JSON",
                     help='Backbone options as a JSON object, e.g. \'{"width": 64, "patch_size": 32}\' '
                          '(replaces the model\'s default backbone options).')(f)
    f = click.option("--max-epochs", type=int, default=None, help="Training epochs (default: the model's step budget).")(f)
    f = click.option("--max-steps", type=int, default=None, help="Training steps (overrides the default budget).")(f)
    f = click.option("--batch-size", type=int, default=None, help="Training batch size (default: the model's).")(f)
    f = click.option("--flow-steps", type=int, default=None,
                     help="Training steps of the flow phase of two-phase models (latent, perturbation, population).")(f)
    f = click.option("--likelihood", default=None, type=click.Choice(LIKELIHOODS.names()),
                     help="Count likelihood of the VAE decoder (latent, perturbation, population; default nb).")(f)
    f = click.option("--seed", type=int, default=0, show_default=True)(f)
    f = click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")(f)
    return f


def _json_object(option: str, text: str | None) -> dict:
    """Parse a JSON-object option (clear error, exit 2); ``None`` gives ``{}``."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExprflowInputError(f"{option} is not valid JSON ({exc.msg}); write e.g. '{{\"width\": 64}}'.")
    if not isinstance(value, dict):
        raise ExprflowInputError(f"{option} must be a JSON object, e.g. '{{\"width\": 64}}'.")
    return value


def _backbone_kwargs(backbone: str, text: str | None) -> dict | None:
    """Parse and check ``--backbone-kwargs`` against the backbone's signature (clear errors, exit 2)."""
    import inspect

    from exprflow.backbones import BACKBONES

    if text is None:
        return None
    kwargs = _json_object("--backbone-kwargs", text)
    params = inspect.signature(BACKBONES.get(backbone)).parameters
    valid = sorted(set(params) - {"dim", "n_conditions", "self"})
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ExprflowInputError(f"--backbone-kwargs: backbone {backbone!r} has no option(s) {unknown}; valid: {valid}.")
    return kwargs


def _model_kwargs(model_name: str, backbone: str | None, likelihood: str | None, backbone_kwargs: str | None = None) -> dict:
    """Constructor options from the CLI flags (``--likelihood`` belongs to the latent model only).

    Without ``--backbone`` the model's configured default backbone is used (and checked against
    ``--backbone-kwargs``)."""
    from exprflow.models import MODELS

    kwargs: dict = {} if backbone is None else {"backbone": backbone}
    if backbone is None:
        backbone = getattr(MODELS.get(model_name).config_cls(), "backbone", "mlp")
    parsed = _backbone_kwargs(backbone, backbone_kwargs)
    if parsed is not None:
        kwargs["backbone_kwargs"] = parsed
    if likelihood is not None:
        if not hasattr(MODELS.get(model_name).config_cls(), "vae"):
            raise ExprflowInputError(f"--likelihood applies to models with a count VAE (latent, perturbation, "
                                     f"population), not --model {model_name}.")
        kwargs["vae"] = {"likelihood": likelihood}
    return kwargs


def _train_kwargs(model_name, max_epochs, max_steps, batch_size, flow_steps, seed) -> dict:
    kwargs = {"max_epochs": max_epochs, "max_steps": max_steps, "seed": seed}
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    if flow_steps is not None:
        import inspect

        from exprflow.models import MODELS

        if "flow_steps" not in inspect.signature(MODELS.get(model_name).train).parameters:
            raise ExprflowInputError(f"--flow-steps applies to models trained in two phases (VAE, then flow: "
                                     f"latent, perturbation, population), not --model {model_name}.")
        kwargs["flow_steps"] = flow_steps
    return kwargs


DEFAULT_CHECKPOINT_EVERY = 1000


def _run_kwargs(model_cls, model_name: str, **options) -> dict:
    """Devices / strategy / checkpoint options for ``model_cls.train``, refused clearly where it lacks them.

    Options left at their defaults are passed only to models whose ``train`` accepts them, so models
    without multi-device or checkpoint support keep working with plain ``exprflow fit``."""
    import inspect

    accepted = inspect.signature(model_cls.train).parameters
    defaults = {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto", "checkpoint_every": None,
                "resume": False, "checkpoint_dir": None}
    if options["checkpoint_every"] is None and "checkpoint_every" in accepted:
        options["checkpoint_every"] = DEFAULT_CHECKPOINT_EVERY
    kwargs = {}
    for name, value in options.items():
        if name in accepted:
            kwargs[name] = value
        elif value != defaults[name] and name != "checkpoint_dir":
            flag = "--" + name.replace("_", "-")
            raise ExprflowInputError(f"--model {model_name} does not support {flag} (its train() has no {name!r}).")
    return kwargs


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True,
              help="Run directory to write.")
@_model_options
def demo(out, model_name, backbone, backbone_kwargs, likelihood, flow_steps, max_epochs, max_steps, batch_size, seed,
         overwrite) -> None:
    """Train on the bundled PBMC3k data (cell-type conditional), generate the test split's cells, evaluate."""
    from exprflow.datasets import pbmc3k
    from exprflow.experiment import ExperimentSpec, run_experiment

    train = _train_kwargs(model_name, max_epochs, max_steps, batch_size, flow_steps, seed)
    spec = ExperimentSpec(model=model_name, model_kwargs=_model_kwargs(model_name, backbone, likelihood, backbone_kwargs),
                          max_epochs=max_epochs, max_steps=max_steps, batch_size=batch_size, seed=seed,
                          train_kwargs={k: v for k, v in train.items() if k == "flow_steps"})
    summary = run_experiment(pbmc3k(), spec, out, condition_key="cell_type", overwrite=overwrite)
    _echo_summary(summary, out)


@cli.command()
@click.option("--data", "data_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Training data (.h5ad).")
@click.option("--layer", default=None, help="Layer holding raw counts (default: X).")
@click.option("--condition-key", default=None, help="obs column to condition on (e.g. cell_type).")
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
@_model_options
def fit(data_path, layer, condition_key, time_key, control_group, model_kwargs, out, accelerator, devices, num_nodes,
        strategy, checkpoint_every, resume, backed, model_name, backbone, backbone_kwargs, likelihood, flow_steps, max_epochs,
        max_steps, batch_size, seed, overwrite) -> None:
    """Train a model on all cells of --data and save it to OUT/model (with OUT/loss.png).

    A run is checkpointed to OUT/checkpoints; --resume continues a killed run exactly. With several
    processes (--devices N --strategy ddp, torchrun, srun) only rank 0 writes OUT.
    """
    import torch

    from exprflow.data import read_adata
    from exprflow.models import MODELS
    from exprflow.models.run_dir import check_run_dir, is_launch_rank_zero, start_run_dir
    from exprflow.plotting import plot_loss_curve

    kwargs = _model_kwargs(model_name, backbone, likelihood, backbone_kwargs)
    extra = _json_object("--model-kwargs", model_kwargs)
    if isinstance(extra.get("vae"), dict) and "vae" in kwargs:  # --likelihood and --model-kwargs' vae options
        extra["vae"] = {**kwargs["vae"], **extra["vae"]}
    kwargs.update(extra)
    kwargs.update({k: v for k, v in (("time_key", time_key), ("control_group", control_group)) if v is not None})
    train = _train_kwargs(model_name, max_epochs, max_steps, batch_size, flow_steps, seed)
    devices = int(devices) if devices.lstrip("-").isdigit() else devices
    options = {"data": str(data_path.resolve()), "layer": layer, "condition_key": condition_key, "model": model_name,
               "model_kwargs": kwargs, "train": dict(train), "accelerator": accelerator, "devices": devices,
               "num_nodes": num_nodes, "strategy": strategy, "checkpoint_every": checkpoint_every, "backed": backed}
    checkpoint_dir = check_run_dir(out, options, overwrite=overwrite, resume=resume)
    model_cls = MODELS.get(model_name)
    train.update(_run_kwargs(model_cls, model_name, accelerator=accelerator, devices=devices, num_nodes=num_nodes,
                             strategy=strategy, checkpoint_dir=str(checkpoint_dir), checkpoint_every=checkpoint_every,
                             resume=resume))
    adata = read_adata(data_path, backed="r" if backed else None)
    torch.manual_seed(seed)
    model = model_cls(adata, layer=layer, condition_key=condition_key, **kwargs)
    start_run_dir(out, options, resume=resume)
    model.train(**train)
    if not is_launch_rank_zero():  # the other processes of a multi-process run write nothing
        return
    model.save(out / "model", overwrite=overwrite)
    plot_loss_curve(model.history, out / "loss.png")
    click.echo(f"model saved to {out / 'model'} (training {model.train_seconds:.1f} s)")


@cli.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--n-cells", type=int, default=None, help="Number of cells to generate.")
@click.option("--like", "like_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Generate as many cells per condition level as this .h5ad holds.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output .h5ad.")
@click.option("--n-steps", type=int, default=16, show_default=True)
@click.option("--solver", default="euler", show_default=True, help="euler | heun | rk4 | dopri5")
@click.option("--guidance", type=float, default=1.0, show_default=True, help="Classifier-free guidance scale.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--chunk-size", type=int, default=None,
              help="Stream: generate and store this many cells at a time (bounded memory, progress bar, "
                   "resumable; see docs/out_of_core.md). Default: all cells in memory at once.")
@click.option("--resume", is_flag=True, help="Continue an interrupted streamed run (--chunk-size) of the same request.")
def generate(run, n_cells, like_path, out, n_steps, solver, guidance, seed, overwrite, chunk_size, resume) -> None:
    """Generate cells from a trained RUN directory (or a model directory) into --out."""
    from exprflow.io import load_any_model, write_h5ad_atomic

    if (n_cells is None) == (like_path is None):
        raise ExprflowInputError("Give exactly one of --n-cells N or --like TEST.h5ad.")
    if resume and chunk_size is None:
        raise ExprflowInputError("--resume continues a streamed run: give the same --chunk-size as that run.")
    if out.exists() and not overwrite:
        raise ExprflowInputError(f"{out} already exists. Pass --overwrite or choose another --out file.")
    model = load_any_model(run)
    key = model.setup.condition_key
    request = {"n_cells": n_cells}
    if like_path is not None:
        from exprflow.data import read_adata

        like = read_adata(like_path, backed="r")  # only obs is needed
        if key is not None:
            if key not in like.obs:
                raise ExprflowInputError(f"{like_path} has no obs column {key!r} (the model's condition key); "
                                         f"available: {', '.join(like.obs.columns) or 'none'}.")
            counts = like.obs[key].astype(str).value_counts()
            request = {"conditions": {str(k): int(v) for k, v in counts.items() if v > 0}, "guidance": guidance}
        else:
            request = {"n_cells": like.n_obs}
    else:
        request["guidance"] = guidance
    if chunk_size is not None:
        path = model.generate_to_file(out, **request, n_steps=n_steps, solver=solver, seed=seed,
                                      chunk_size=chunk_size, resume=resume, overwrite=overwrite)
        click.echo(f"cells written to {path} in chunks of {chunk_size}")
        return
    adata = model.generate(**request, n_steps=n_steps, solver=solver, seed=seed)
    write_h5ad_atomic(adata, out)
    click.echo(f"{adata.n_obs} cells written to {out}")


@cli.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data", "data_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Cells to embed (.h5ad; for gene-set backbones any gene panel, matched by gene name).")
@click.option("--layer", default=None, help="Layer of --data holding counts (default: X).")
@click.option("--drop-unknown-genes", is_flag=True,
              help="Ignore genes the model does not know (reported) instead of refusing the file.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help='Output .h5ad: the cells\' obs with the embedding in obsm["X_exprflow"].')
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
def embed(run, data_path, layer, drop_unknown_genes, out, overwrite) -> None:
    """Embed the cells of --data with a trained RUN: pooled cell embedding of a gene-set backbone
    (deepsets, set_transformer, rank_tokens, value_bins) or the VAE latent means of a latent model."""
    import anndata as ad

    from exprflow.data import read_adata
    from exprflow.io import load_any_model, write_h5ad_atomic

    if out.exists() and not overwrite:
        raise ExprflowInputError(f"{out} already exists. Pass --overwrite or choose another --out file.")
    model, adata = load_any_model(run), read_adata(data_path)
    if hasattr(model, "get_cell_embedding"):
        emb = model.get_cell_embedding(adata, layer=layer, on_unknown="drop" if drop_unknown_genes else "raise")
    else:
        if layer is not None and layer != model.setup.layer:
            raise ExprflowInputError(f"This model reads layer {model.setup.layer!r}; --layer cannot change it.")
        emb = model.get_latent_representation(adata)
    result = ad.AnnData(obs=adata.obs.copy(), obsm={"X_exprflow": emb})
    result.uns["exprflow"] = {"embedding_of": str(data_path), "model": str(run)}
    write_h5ad_atomic(result, out)
    click.echo(f"{result.n_obs} cells x {emb.shape[1]} dimensions written to {out} (obsm['X_exprflow'])")


@cli.command("evaluate")
@click.option("--real", "real_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Real held-out (test) cells.")
@click.option("--generated", "gen_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--train", "train_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Real training cells (PCA fit, floor, dcr). Without it the real file is split 50/50.")
@click.option("--layer", default=None, help="Layer of the real files holding counts (default: X).")
@click.option("--condition-key", default=None, help="obs column for per-condition metrics and label accuracy.")
@click.option("--no-counts", is_flag=True, help="Values are not counts (e.g. FPKM): log1p only.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="metrics.json to write.")
def evaluate_cmd(real_path, gen_path, train_path, layer, condition_key, no_counts, seed, out) -> None:
    """Score generated cells with the evaluation protocol (docs/evaluation.md); writes metrics.json and prints the table."""
    from exprflow.data import read_adata, split_indices
    from exprflow.io import write_text_atomic
    from exprflow.metrics import evaluate, format_report

    real, generated = read_adata(real_path), read_adata(gen_path)
    if train_path is not None:
        train = read_adata(train_path)
    else:
        labels = real.obs[condition_key].astype(str).to_numpy() if condition_key in real.obs else None
        tr, te = split_indices(real.n_obs, None if labels is None else _codes(labels), test_fraction=0.5, seed=seed)
        train, real = real[tr].copy(), real[te].copy()
        logger.warning("no --train given: split the real file 50/50 into reference (train) and test halves")
    result = evaluate(real, generated, train, layer=layer, condition_key=condition_key, counts=not no_counts,
                      seed=seed)
    write_text_atomic(json.dumps(result, indent=2), out)
    click.echo(format_report(result))


def _codes(labels):
    import numpy as np

    return np.unique(labels, return_inverse=True)[1]


def _echo_summary(summary: dict, out: Path) -> None:
    ratios = summary["metrics"].get("ratio_to_floor", {})
    m = summary["metrics"]["metrics"]
    click.echo(
        f"run written to {out}\n"
        f"  energy {ratios.get('energy', float('nan')):.2f}x floor, w2 {ratios.get('w2', float('nan')):.2f}x floor, "
        f"c2st_knn {m.get('c2st_knn', float('nan')):.3f}, label accuracy {m.get('label_accuracy', float('nan'))}\n"
        f"  training {summary['train_wall_s']:.1f} s, sampling {summary['cells_per_s']:.0f} cells/s; see {out / 'report.md'}"
    )


def _add_discovered_commands() -> None:
    from exprflow.commands import discover_commands

    for command in discover_commands():
        cli.add_command(command)


_add_discovered_commands()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="exprflow")


if __name__ == "__main__":
    main()
