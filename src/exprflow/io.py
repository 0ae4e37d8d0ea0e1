"""Atomic file outputs and loading any saved model by its recorded class."""

from __future__ import annotations

import os
from pathlib import Path

from anndata import AnnData

from exprflow.errors import ExprflowInputError


def _replace_atomically(path: str | os.PathLike, write, suffix: str) -> Path:
    """Call ``write(tmp_path)`` then move the temporary file onto ``path`` with ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{suffix}")
    write(tmp)
    os.replace(tmp, path)
    return path


def write_h5ad_atomic(adata: AnnData, path: str | os.PathLike) -> Path:
    """Write ``adata`` to ``path`` through a temporary file and ``os.replace``."""
    return _replace_atomically(path, adata.write_h5ad, ".h5ad")


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    return _replace_atomically(path, lambda tmp: Path(tmp).write_text(text), "")


def load_any_model(path: str | os.PathLike):
    """Load the model in ``path`` (a model directory, or a run directory holding ``model/``).

    A run directory must hold the finished model of its own run (see :mod:`exprflow.runs.run_dir`);
    an interrupted, running or mixed run is refused with what to do.
    """
    from exprflow.models import MODELS
    from exprflow.persistence.model_dir import read_model_config
    from exprflow.runs.run_dir import MODEL_DIR, RUN_FILE, check_run_readable

    path = Path(path)
    if (path / RUN_FILE).is_file():
        check_run_readable(path)
        if (path / MODEL_DIR).is_dir():
            path = path / MODEL_DIR
    elif (path / MODEL_DIR / "config.json").exists():
        path = path / MODEL_DIR
    if not (path / "config.json").exists():
        raise ExprflowInputError(f"{path} holds no exprflow model (no config.json); give a run or model directory.")
    kind = read_model_config(path).get("model")
    by_class = {MODELS.get(name).__name__: MODELS.get(name) for name in MODELS.names()}
    if kind not in by_class:
        raise ExprflowInputError(f"{path} holds an unknown model type {kind!r}; known: {', '.join(by_class)}.")
    return by_class[kind].load(str(path))
