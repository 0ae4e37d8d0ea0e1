"""``exprflow generate`` (cells from a trained run) and ``exprflow embed`` (cells into a model's space)."""
from __future__ import annotations

from pathlib import Path

import click

from exprflow.errors import ExprflowInputError


@click.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--n-cells", type=int, default=None, help="Number of cells to generate.")
@click.option("--like", "like_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Generate as many cells per condition level as this .h5ad holds.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output .h5ad.")
@click.option("--n-steps", type=int, default=None, help="Solver steps (default: the model's sampler).")
@click.option("--solver", default=None, help="euler | heun | rk4 | dopri5 (default: the model's sampler; "
                                             "one Euler step after reflow).")
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


@click.command()
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


COMMANDS = [generate, embed]
