"""Rebuilding a trained model from its saved directory without the training data."""

from __future__ import annotations

import logging

import numpy as np
from anndata import AnnData

from exprflow.errors import ExprflowInputError
from exprflow.models.setup import AnnDataSetup
from exprflow.representations import LogNormalLibrary, StateVector

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


def restore_state_flow(cls, dir_path: str, adata: AnnData | None, load_model_dir, config_from_dict):
    """Instantiate ``cls`` (StateFlow) from a directory written by ``StateFlow.save``."""
    saved, tensors = load_model_dir(dir_path)
    if saved.get("model") != "StateFlow":
        raise ExprflowInputError(f"{dir_path} holds a {saved.get('model')!r} model, not a StateFlow.")
    if adata is not None:
        check_genes(saved["var_names"], adata)
    self = cls.__new__(cls)
    self.config = config_from_dict(saved["config"])
    self.setup = AnnDataSetup(**saved["setup"])
    self.var_names = list(saved["var_names"])
    self.levels = saved["condition_levels"]
    counts = saved.get("train_condition_counts")
    self.train_codes = None if counts is None else np.repeat(np.arange(len(counts)), counts)
    self.representation = StateVector(self.config.representation).load_state_dict(saved["representation"])
    self.library = LogNormalLibrary().load_state_dict(saved["library"])
    self._build_networks(len(self.levels) if self.levels else 0)
    prefix = "ema." if any(k.startswith("ema.") for k in tensors) else "backbone."
    weights = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    missing, unexpected = self.backbone.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ExprflowInputError(
            f"{dir_path}: the weights do not fit the configured backbone (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}); the directory is corrupted or was written by another version."
        )
    self.plan = None
    self.history = [tuple(h) for h in saved.get("history", [])]
    self.train_seconds = saved.get("train_seconds")
    self.is_trained = True
    self.data = None
    return self
