"""``exprflow predict``: perturbed cells predicted from control cells by a trained PerturbationFlow.

Training goes through the shared ``exprflow fit``::

    exprflow fit --data train.h5ad --model perturbation --condition-key condition --control-group ctrl \\
        [--model-kwargs '{"cell_type_key": "cell_type", "flow_steps": 2000}'] --out runs/ifnb
    exprflow predict runs/ifnb --data ctrl.h5ad --condition stim --out pred.h5ad
"""

from __future__ import annotations

from pathlib import Path

import click

from exprflow.errors import ExprflowInputError


@click.command("predict")
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data", "data_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Control cells (.h5ad, the model's genes in its order).")
@click.option("--condition", default=None, help="Perturbation to predict (default: the model's only one).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output .h5ad.")
@click.option("--n-steps", type=int, default=16, show_default=True, help="ODE steps of the flow.")
@click.option("--solver", default="euler", show_default=True, help="euler | heun | rk4 | dopri5")
@click.option("--guidance", type=float, default=1.0, show_default=True, help="Classifier-free guidance scale.")
@click.option("--decode", type=click.Choice(["sample", "mean"]), default="sample", show_default=True,
              help="Sampled integer counts or decoder means.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
def predict(run, data_path, condition, out, n_steps, solver, guidance, decode, seed, overwrite) -> None:
    """Predict the perturbed state of every control cell of --data with a trained perturbation RUN."""
    from exprflow.data import read_adata
    from exprflow.io import load_any_model, write_h5ad_atomic

    if out.exists() and not overwrite:
        raise ExprflowInputError(f"{out} already exists. Pass --overwrite or choose another --out file.")
    model = load_any_model(run)
    if not hasattr(model, "predict"):
        raise ExprflowInputError(f"{run} holds a {type(model).__name__}; exprflow predict needs a model trained "
                                 "with --model perturbation.")
    adata = read_adata(data_path)
    from exprflow.models.restore import check_genes

    check_genes(model.var_names, adata)
    pred = model.predict(adata, condition=condition, n_steps=n_steps, solver=solver, guidance=guidance, seed=seed,
                         decode=decode)
    write_h5ad_atomic(pred, out)
    click.echo(f"{pred.n_obs} predicted {pred.uns['exprflow']['condition']!r} cells written to {out}")


COMMANDS = [predict]
