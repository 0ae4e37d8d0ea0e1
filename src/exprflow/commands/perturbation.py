"""``exprflow predict``: perturbed cells predicted from control cells by a trained PerturbationFlow or a baseline.

Training goes through the shared ``exprflow fit``::

    exprflow fit --data train.h5ad --model perturbation --condition-key condition --control-group ctrl \\
        [--model-kwargs '{"cell_type_key": "cell_type"}'] [--flow-steps 2000] --out runs/ifnb
    exprflow predict runs/ifnb --data ctrl.h5ad --condition stim --out pred.h5ad [--decode residual]

Baselines (``exprflow.models.perturbation_baselines.BASELINES``) are fitted on ``--train`` on the fly::

    exprflow predict --baseline ridge --train train.h5ad --condition-key condition --control-group ctrl \\
        --cell-type-key cell_type --data ctrl.h5ad --out ridge.h5ad
    exprflow predict runs/ifnb --baseline latent_arithmetic --train train.h5ad --data ctrl.h5ad --out la.h5ad
"""

from __future__ import annotations

from pathlib import Path

import click

from exprflow.commands.options import sampling_options
from exprflow.errors import ExprflowInputError
from exprflow.sampling.options import EULER_REFERENCE

BASELINE_NAMES = ("no_change", "train_mean", "mean_shift", "ridge", "latent_arithmetic")


@click.command("predict")
@click.argument("run", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data", "data_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Control cells (.h5ad, the model's genes in its order).")
@click.option("--condition", default=None, help="Perturbation to predict (default: the only one).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output .h5ad.")
@sampling_options(EULER_REFERENCE)
@click.option("--guidance", type=float, default=EULER_REFERENCE.guidance, show_default=True,
              help="Classifier-free guidance scale.")
@click.option("--decode", type=click.Choice(["sample", "mean", "residual"]), default="sample", show_default=True,
              help="Sampled integer counts, decoder means, or the control cell plus the predicted shift (residual).")
@click.option("--baseline", type=click.Choice(BASELINE_NAMES), default=None,
              help="Predict with a baseline instead of the flow, fitted on --train (latent_arithmetic: in RUN's latent space).")
@click.option("--train", "train_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Training cells (control and perturbed) that --baseline is fitted on.")
@click.option("--condition-key", default=None, help="--baseline: obs column of the perturbation (default: RUN's).")
@click.option("--control-group", default=None, help="--baseline: its control level (default: RUN's).")
@click.option("--cell-type-key", default=None, help="--baseline: obs column of cell types (default: RUN's).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
def predict(run, data_path, condition, out, n_steps, solver, guidance, decode, baseline, train_path, condition_key,
            control_group, cell_type_key, seed, overwrite) -> None:
    """Predict the perturbed state of every control cell of --data with a trained perturbation RUN or a --baseline."""
    from exprflow.data import read_adata
    from exprflow.io import load_any_model, write_h5ad_atomic
    from exprflow.persistence.restore import check_genes

    if out.exists() and not overwrite:
        raise ExprflowInputError(f"{out} already exists. Pass --overwrite or choose another --out file.")
    if run is None and baseline in (None, "latent_arithmetic"):
        raise ExprflowInputError("Give the RUN directory of a model trained with --model perturbation"
                                 + (" (latent_arithmetic works in its latent space)." if baseline else
                                    ", or --baseline NAME with --train FILE."))
    if baseline is not None and decode != "sample" and (baseline != "latent_arithmetic" or decode == "residual"):
        raise ExprflowInputError(f"--decode {decode} does not apply to --baseline {baseline} (gene-space baselines "
                                 "give counts; latent_arithmetic takes sample or mean).")
    model = None
    if run is not None:
        model = load_any_model(run)
        if not hasattr(model, "transport"):
            raise ExprflowInputError(f"{run} holds a {type(model).__name__}; exprflow predict needs a model trained "
                                     "with --model perturbation.")
    adata = read_adata(data_path)
    if baseline is None:
        check_genes(model.var_names, adata)
        pred = model.predict(adata, condition=condition, n_steps=n_steps, solver=solver, guidance=guidance, seed=seed,
                             decode=decode)
    else:
        pred = _predict_baseline(baseline, model, adata, train_path, condition, seed, decode,
                                 dict(condition_key=condition_key, control_group=control_group,
                                      cell_type_key=cell_type_key))
    write_h5ad_atomic(pred, out)
    click.echo(f"{pred.n_obs} predicted {pred.uns['exprflow']['condition']!r} cells written to {out}")


def _predict_baseline(name, model, adata, train_path, condition, seed, decode, keys):
    from exprflow.data import read_adata
    from exprflow.models.perturbation_baselines import BASELINES
    from exprflow.persistence.restore import check_genes

    if train_path is None:
        raise ExprflowInputError(f"--baseline {name} is fitted on the training cells: give --train FILE.")
    train = read_adata(train_path)
    if name == "latent_arithmetic":
        check_genes(model.var_names, train)
        check_genes(model.var_names, adata)
        method = BASELINES.get(name).from_model(model, train)
        condition = condition if condition is not None else _only(model.perturbations)
        return method.predict_adata(adata, condition, seed=seed, decode=decode)
    if model is not None:
        keys = {"condition_key": keys["condition_key"] or model.setup.condition_key,
                "control_group": keys["control_group"] or model.config.control_group,
                "cell_type_key": keys["cell_type_key"] or model.config.cell_type_key}
    if keys["condition_key"] is None or keys["control_group"] is None:
        raise ExprflowInputError(f"--baseline {name} needs --condition-key and --control-group (or a RUN to take them from).")
    method = BASELINES.build(name).fit(train, **keys)
    check_genes(method.var_names, adata)
    return method.predict_adata(adata, condition if condition is not None else _only(method.perturbations), seed=seed)


def _only(perturbations: list[str]) -> str:
    if len(perturbations) != 1:
        raise ExprflowInputError(f"Give --condition, one of {perturbations}.")
    return perturbations[0]


COMMANDS = [predict]
