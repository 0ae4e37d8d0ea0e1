"""Rebuilding a trained model from its saved directory without the training data."""

from __future__ import annotations

import logging

from anndata import AnnData

from exprflow.errors import ExprflowInputError

logger = logging.getLogger(__name__)


def check_genes(model_genes: list[str], adata: AnnData) -> None:
    """Raise a clear error when ``adata`` does not have the model's genes in the model's order."""
    genes = [str(g) for g in adata.var_names]
    if genes == list(model_genes):
        return
    missing = [g for g in model_genes if g not in set(genes)]
    extra = [g for g in genes if g not in set(model_genes)]
    if not missing and not extra:
        raise ExprflowInputError(
            "The AnnData has the model's genes in another order; reorder it with adata[:, model.var_names]."
        )
    raise ExprflowInputError(
        f"The AnnData's genes do not match the model's: {len(missing)} model genes missing (e.g. {missing[:3]}), "
        f"{len(extra)} genes not in the model (e.g. {extra[:3]}). Subset it to the model's genes: "
        "adata[:, model.var_names] (all of them must be present)."
    )


def load_backbone_weights(module, tensors: dict, name: str) -> None:
    """Load ``module`` from the ``ema.*`` tensors when present, else from ``{name}.*``; clear error on mismatch."""
    prefix = "ema." if any(k.startswith("ema.") for k in tensors) else f"{name}."
    weights = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    missing, unexpected = module.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ExprflowInputError(
            f"the saved weights do not fit the configured {name} (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}); the directory is corrupted or was written by another version."
        )


def read_saved(cls: type, dir_path, adata: AnnData | None = None) -> tuple[dict, dict]:
    """Read a model directory saved by a ``cls`` model: ``(config, tensors)``.

    Clear errors when the directory holds another kind of model, or (with ``adata``) when the AnnData's
    genes are not the model's.
    """
    from exprflow.persistence.model_dir import load_model_dir

    saved, tensors = load_model_dir(dir_path)
    if saved.get("model") != cls.__name__:
        raise ExprflowInputError(f"{dir_path} holds a {saved.get('model')!r} model, not a {cls.__name__}.")
    if adata is not None:
        check_genes(saved["var_names"], adata)
    return saved, tensors
