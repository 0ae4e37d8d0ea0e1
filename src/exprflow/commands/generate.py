"""``exprflow generate`` (cells from a trained run) and ``exprflow embed`` (cells into a model's space)."""
from __future__ import annotations

from pathlib import Path

import click

from exprflow.commands.conditions import guidance_options, like_request, parse_guidance
from exprflow.commands.options import no_plots_option, sampling_options
from exprflow.errors import ExprflowInputError


def report_folder(out: Path) -> Path:
    """Where a command writing the file ``out`` puts its report: ``{out's stem}_report/`` beside it."""
    return out.with_name(f"{out.stem}_report")


@click.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--n-cells", type=int, default=None, help="Number of cells to generate.")
@click.option("--like", "like_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Generate as many cells per condition level (label combination) as this .h5ad holds.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output .h5ad.")
@sampling_options()
@guidance_options
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--chunk-size", type=int, default=None,
              help="Stream: generate and store this many cells at a time (bounded memory, progress bar, "
                   "resumable; see docs/out_of_core.md). Default: all cells in memory at once.")
@click.option("--resume", is_flag=True, help="Continue an interrupted streamed run (--chunk-size) of the same request.")
@no_plots_option
def generate(run, n_cells, like_path, out, n_steps, solver, guidance, composition, seed, overwrite, chunk_size,
             resume, no_plots) -> None:
    """Generate cells from a trained RUN directory (or a model directory) into --out.

    Also writes OUT_report/report.md (beside --out) with, given --like, a UMAP of the --like cells
    and the generated cells."""
    from exprflow.io import load_any_model, write_h5ad_atomic
    from exprflow.run_report import write_report

    if (n_cells is None) == (like_path is None):
        raise ExprflowInputError("Give exactly one of --n-cells N or --like TEST.h5ad.")
    if resume and chunk_size is None:
        raise ExprflowInputError("--resume continues a streamed run: give the same --chunk-size as that run.")
    if out.exists() and not overwrite:
        raise ExprflowInputError(f"{out} already exists. Pass --overwrite or choose another --out file.")
    guidance = parse_guidance(guidance)
    model = load_any_model(run)
    key = model.setup.condition_key
    request = {"n_cells": n_cells}
    if like_path is not None:
        from exprflow.data import read_adata

        like = read_adata(like_path, backed="r")  # only obs is needed
        _check_like_genes(like, like_path, model.var_names)
        request = like_request(model, like, like_path)
    if "conditions" in request or like_path is None:
        request["guidance"] = guidance
    if composition != "joint" or isinstance(guidance, dict):
        request["composition"] = composition
    # unset --n-steps / --solver leave the model's own default sampler
    request.update({k: v for k, v in (("n_steps", n_steps), ("solver", solver)) if v is not None})
    shown = request if not hasattr(request.get("conditions"), "columns") else {
        **request, "conditions": f"{len(request['conditions'])} label combinations of {key}"}
    facts = [f"model: {type(model).__name__} from `{run}`", f"request: {shown}, seed {seed}"]
    key = key[0] if isinstance(key, list) else key  # the reports colour by one key
    if chunk_size is not None:
        path = model.generate_to_file(out, **request, seed=seed,
                                      chunk_size=chunk_size, resume=resume, overwrite=overwrite)
        report = write_report(report_folder(out), title="exprflow generate", plots=False,
                              facts=[*facts, f"cells written to `{path}` in chunks of {chunk_size}"])
        click.echo(f"cells written to {path} in chunks of {chunk_size}; see {report}")
        return
    adata = model.generate(**request, seed=seed)
    write_h5ad_atomic(adata, out)
    real = None
    if like_path is not None and not no_plots:
        from exprflow.data import read_adata

        real = read_adata(like_path)
    info = adata.uns["exprflow"]
    facts.append(f"{adata.n_obs} cells written to `{out}` in {info.get('sampling_seconds', 0):.1f} s "
                 f"({info.get('solver', 'default solver')} with {info.get('n_steps')} steps: "
                 f"{info.get('nfe')} network evaluations)")
    report = write_report(report_folder(out), title="exprflow generate", facts=facts, real=real, generated=adata,
                          layer=_like_layer(model, real), condition_key=key, plots=not no_plots, seed=seed)
    click.echo(f"{adata.n_obs} cells written to {out}; see {report}")


def _like_layer(model, real) -> str | None:
    """The layer of the --like cells holding counts: the model's when they have it, else X."""
    layer = getattr(model.setup, "layer", None)
    return layer if real is not None and layer in real.layers else None


def _check_like_genes(like, like_path: Path, model_genes: list[str]) -> None:
    """--like copies the number of cells per condition level of cells like the model's: refuse a file of
    other genes (it is not what the model generates), warn about a file with no genes (obs only)."""
    import logging

    genes = {str(g) for g in like.var_names}
    if not genes:
        logging.getLogger("exprflow").warning(
            "%s holds no genes; only its number of cells per condition level is used.", like_path)
        return
    missing, extra = set(model_genes) - genes, genes - set(model_genes)
    if missing or extra:
        raise ExprflowInputError(
            f"{like_path} holds other genes than the model ({len(missing)} of the model's {len(model_genes)} genes "
            f"missing, e.g. {sorted(missing)[:3]}; {len(extra)} genes the model does not know, e.g. {sorted(extra)[:3]}). "
            "--like takes cells of the model's genes (e.g. the test split of the training data); to ask for a "
            "number of cells instead, pass --n-cells N."
        )


@click.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data", "data_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Cells to embed (.h5ad; for gene-set backbones any gene panel, matched by gene name).")
@click.option("--layer", default=None, help="Layer of --data holding counts, or X (default: the model's layer).")
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
        emb = model.get_latent_representation(adata, layer=layer)
    result = ad.AnnData(obs=adata.obs.copy(), obsm={"X_exprflow": emb})
    result.uns["exprflow"] = {"embedding_of": str(data_path), "model": str(run)}
    write_h5ad_atomic(result, out)
    click.echo(f"{result.n_obs} cells x {emb.shape[1]} dimensions written to {out} (obsm['X_exprflow'])")


COMMANDS = [generate, embed]
