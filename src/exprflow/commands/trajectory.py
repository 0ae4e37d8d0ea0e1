"""``exprflow trajectory predict | generate``: cells at a time point, or whole trajectories, from a run.

A run is written by ``exprflow fit --model trajectory --time-key KEY ...``.
"""

from __future__ import annotations

from pathlib import Path

import click

from exprflow.commands.options import sampling_options
from exprflow.errors import ExprflowInputError
from exprflow.sampling.options import EULER_REFERENCE


def _load(run: Path):
    from exprflow.io import load_any_model
    from exprflow.models.trajectory_flow import TrajectoryFlow

    model = load_any_model(run)
    if not isinstance(model, TrajectoryFlow):
        raise ExprflowInputError(f"{run} holds a {type(model).__name__}; trajectory commands need a model "
                                 "trained with `exprflow fit --model trajectory --time-key KEY`.")
    return model


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise ExprflowInputError(f"{out} already exists. Pass --overwrite or choose another --out file.")


def _run_options(f):
    f = click.option("--context", type=click.Choice(["observed", "none"]), default=None,
                     help="observed: the other observed time points (real train cells chained by OT) are given "
                          "and the rest is filled in; none: everything is generated.")(f)
    f = sampling_options(EULER_REFERENCE)(f)
    f = click.option("--overwrite", is_flag=True, help="Replace existing outputs.")(f)
    f = click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output .h5ad.")(f)
    return click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))(f)


@click.group()
def trajectory() -> None:
    """Time courses: predict cells at a (held-out) time point, generate trajectories."""


@trajectory.command()
@_run_options
@click.option("--time", "time_point", required=True,
              help="A time on the model's grid (value or level label), or any time inside it with --method.")
@click.option("--method", type=click.Choice(["auto", "exact", "nearest", "interpolate"]), default="auto",
              show_default=True, help="A numeric time between grid points: the nearest grid step (time bin) or "
                                      "states interpolated between its neighbours; auto: nearest for pseudotime "
                                      "bins, else grid times only.")
@click.option("--n-cells", type=int, default=500, show_default=True)
def predict(run, out, time_point, method, n_cells, context, n_steps, solver, seed, overwrite) -> None:
    """Cells at one time point (e.g. a held-out one) from a trained RUN into --out."""
    from exprflow.io import write_h5ad_atomic

    _check_out(out, overwrite)
    if n_cells < 1:
        raise ExprflowInputError("--n-cells must be at least 1.")
    model = _load(run)
    adata = model.predict(time_point, n_cells=n_cells, context=context or "observed", n_steps=n_steps,
                          solver=solver, seed=seed, method=method)
    write_h5ad_atomic(adata, out)
    click.echo(f"{adata.n_obs} cells at {model.setup.time_key}={time_point} written to {out}")


@trajectory.command()
@_run_options
@click.option("--n", "n_trajectories", type=int, default=100, show_default=True, help="Number of trajectories.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also draw the trajectories over the real cells of --data (PNG).")
@click.option("--data", "data_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Real cells (.h5ad, the model's genes) for --plot.")
def generate(run, out, n_trajectories, plot, data_path, context, n_steps, solver, seed, overwrite) -> None:
    """Whole trajectories (obs: trajectory, time, observed) from a trained RUN into --out."""
    from exprflow.data import read_adata
    from exprflow.io import write_h5ad_atomic
    from exprflow.persistence.restore import check_genes
    from exprflow.plotting import trajectories

    _check_out(out, overwrite)
    if n_trajectories < 1:
        raise ExprflowInputError("--n must be at least 1.")
    if plot is not None and data_path is None:
        raise ExprflowInputError("--plot needs --data (the real cells to draw the trajectories over).")
    model = _load(run)
    adata = model.generate_trajectories(n_trajectories, context=context or "none", n_steps=n_steps, solver=solver,
                                        seed=seed)
    write_h5ad_atomic(adata, out)
    click.echo(f"{n_trajectories} trajectories x {len(model.time_grid)} time points written to {out}")
    if plot is not None:
        real = read_adata(data_path)
        check_genes(model.var_names, real)
        if model.setup.time_key not in real.obs.columns:
            raise ExprflowInputError(f"--data has no obs column {model.setup.time_key!r} (the model's time key).")
        weight_key = model.setup.weight_key if model.setup.weight_key in real.obs.columns else None
        trajectories(real, adata, time_key=model.setup.time_key, weight_key=weight_key, layer=model.setup.layer,
                     counts=model.representation.is_counts, save=plot)
        click.echo(f"figure written to {plot}")


COMMANDS = [trajectory]
