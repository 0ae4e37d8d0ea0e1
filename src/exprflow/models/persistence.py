"""Saving and loading a model directory, atomically.

A saved model is a directory holding ``config.json`` (the resolved config, versions, gene names,
condition levels) and ``weights.pt`` (a flat ``dict[str, Tensor]`` loadable with
``torch.load(weights_only=True)``). It is written to a temporary sibling directory first and moved
into place with ``os.replace``, so a crash never leaves a half-written model behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from exprflow.errors import ExprflowInputError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"


def save_model_dir(path: str | os.PathLike, config: dict, tensors: dict[str, torch.Tensor], overwrite: bool = False) -> Path:
    """Write ``config`` and ``tensors`` to the directory ``path`` atomically."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ExprflowInputError(f"{path} already exists. Pass overwrite=True (CLI: --overwrite) or choose another directory.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        with open(tmp / CONFIG_FILE, "w") as fh:
            json.dump(config, fh, indent=2)
        torch.save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp / WEIGHTS_FILE)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def load_model_dir(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read a model directory written by :func:`save_model_dir` (weights with ``weights_only=True``)."""
    path = Path(path)
    if not (path / CONFIG_FILE).exists() or not (path / WEIGHTS_FILE).exists():
        raise ExprflowInputError(
            f"{path} is not an exprflow model directory: expected {CONFIG_FILE} and {WEIGHTS_FILE} in it."
        )
    try:
        with open(path / CONFIG_FILE) as fh:
            config = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExprflowInputError(
            f"{path / CONFIG_FILE} is not valid JSON ({exc}); the model directory is corrupted or was only "
            "partly written. Re-save the model or use another copy."
        ) from None
    try:
        tensors = torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickled code or a corrupted file
        raise ExprflowInputError(
            f"Could not load {path / WEIGHTS_FILE} safely ({type(exc).__name__}: {exc}). The file is corrupted or "
            "holds pickled code; exprflow only loads plain tensors."
        ) from None
    return config, tensors
