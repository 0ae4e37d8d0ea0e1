"""Saving and loading a :class:`~exprflow.models.base.FlowModel`: the fields every model shares, plus its
hooks ``_extra_state`` / ``_tensors`` (save) and ``_load_meta`` / ``_load_extra`` (load)."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch
from anndata import AnnData

from exprflow import __version__
from exprflow.data.setup import check_same_setup
from exprflow.errors import ExprflowInputError
from exprflow.flows.conditions import ConditionSpace
from exprflow.persistence.model_dir import config_from_dict, save_model_dir
from exprflow.training.history import history_from_json, history_to_json


def save_flow_model(model, dir_path: str, overwrite: bool = False) -> None:
    """Write ``model`` to ``dir_path`` (``config.json`` + ``weights.pt``), atomically."""
    if not model.is_trained:
        raise ExprflowInputError("Nothing to save: the model is not trained.")
    codes, levels, space = model.train_codes, model.levels, model.condition_space
    config = {
        "model": type(model).__name__, "exprflow_version": __version__, "torch_version": torch.__version__,
        "config": asdict(model.config), "setup": asdict(model.setup), "var_names": model.var_names,
        "condition_levels": levels,
        "train_condition_counts": None if codes is None or levels is None
        else np.bincount(codes, minlength=len(levels)).tolist(),
        "condition_space": None if space is None else {
            **space.state_dict(),
            "train_combinations": [[int(c), int(k)] for c, k in zip(*np.unique(codes, return_counts=True))],
        },
        "train_seconds": model.train_seconds, "history": history_to_json(model.history),
        "reflow": getattr(model, "reflow_info", None), **model._extra_state(),
    }
    save_model_dir(dir_path, config, model._tensors(), overwrite=overwrite)


def load_flow_model(cls, dir_path: str, adata: AnnData | None = None):
    """A trained ``cls`` read from ``dir_path``; with ``adata``, its genes and set-up are checked."""
    from exprflow.persistence.restore import read_saved

    saved, tensors = read_saved(cls, dir_path, adata)
    self = cls.__new__(cls)
    self.config = config_from_dict(cls.config_cls, saved["config"])
    self.setup = cls.setup_cls(**saved["setup"])
    if adata is not None:
        check_same_setup(self.setup, adata, cls.__name__)
    self.var_names = list(saved["var_names"])
    self.levels = saved.get("condition_levels")
    counts = saved.get("train_condition_counts")
    self.train_codes = None if counts is None else np.repeat(np.arange(len(counts)), counts)
    space = saved.get("condition_space")
    self.condition_space = None if space is None else ConditionSpace.from_state(space)
    if space is not None:
        combos = np.asarray(space["train_combinations"], dtype=np.int64).reshape(-1, 2)
        self.train_codes = np.repeat(combos[:, 0], combos[:, 1])
    self.data = None
    self.var = None
    self.plan = None
    self.history = history_from_json(saved.get("history"))
    self.train_seconds = saved.get("train_seconds")
    self.reflow_info = saved.get("reflow")
    try:
        self._load_meta(saved)
        self._build_networks(self.n_conditions)
        self._load_extra(saved, tensors)
    except (RuntimeError, KeyError, ValueError) as exc:  # weights of another shape: not this config's model
        if isinstance(exc, ExprflowInputError):
            raise
        raise ExprflowInputError(
            f"The weights in {dir_path} do not fit its config.json ({len(self.var_names)} genes, "
            f"{self.n_conditions} condition levels): {str(exc).splitlines()[0][:300]}. The directory is corrupted "
            "or mixed from two models; re-save the model or train it again."
        ) from None
    self.is_trained = True
    return self
