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
import warnings
from dataclasses import asdict, fields, is_dataclass, replace
from pathlib import Path

import torch

from exprflow.errors import ExprflowInputError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"


def save_model_dir(path: str | os.PathLike, config: dict, tensors: dict[str, torch.Tensor], overwrite: bool = False) -> Path:
    """Write ``config`` and ``tensors`` to the directory ``path`` atomically."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ExprflowInputError(f"{path} already exists. Pass overwrite=True or choose another directory.")
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


def unsafe_load_reason(exc: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, without PyTorch's advice to load it unsafely."""
    text = str(exc)
    if "weights_only" in text or "Unsupported global" in text or "Weights only load failed" in text:
        return "it holds pickled Python objects (code), which exprflow never loads"
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def read_model_config(path: str | os.PathLike) -> dict:
    """``config.json`` of the model directory ``path``; a clear error when it is truncated or not JSON."""
    cfg = Path(path) / CONFIG_FILE
    try:
        config = json.loads(cfg.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExprflowInputError(
            f"{cfg} is not valid JSON ({exc}); the model directory is corrupted or was only partly written. "
            "Re-save the model or use another copy."
        ) from None
    if not isinstance(config, dict):
        raise ExprflowInputError(f"{cfg} is not an exprflow model config (a JSON object); use another copy.")
    return config


def load_model_dir(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read a model directory written by :func:`save_model_dir` (weights with ``weights_only=True``).

    The ``model/`` folder of an ``exprflow fit`` run is read only when that run finished
    (:func:`~exprflow.runs.run_dir.check_run_readable`).
    """
    from exprflow.runs.run_dir import MODEL_DIR, check_run_readable

    path = Path(path)
    if path.name == MODEL_DIR:
        check_run_readable(path.parent)
    if not (path / CONFIG_FILE).exists() or not (path / WEIGHTS_FILE).exists():
        raise ExprflowInputError(
            f"{path} is not an exprflow model directory: expected {CONFIG_FILE} and {WEIGHTS_FILE} in it."
        )
    config = read_model_config(path)
    try:
        tensors = torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickled code or a corrupted file
        raise ExprflowInputError(
            f"Could not load {path / WEIGHTS_FILE} safely ({unsafe_load_reason(exc)}). The file is corrupted or "
            "holds pickled code; exprflow only loads plain tensors. Re-save the model or use another copy."
        ) from None
    return config, tensors


def coerce_nested(config_cls: type, d: dict) -> dict:
    """Turn dict values of nested-dataclass fields (e.g. ``flow_optim``) back into their dataclasses; the
    keys a dict leaves out keep the field's default (``vae_optim={"lr": 1e-4}`` changes the rate only)."""
    out = dict(d)
    for f in fields(config_cls):
        default = f.default
        if isinstance(out.get(f.name), dict) and is_dataclass(default):
            out[f.name] = replace(default, **out[f.name])
    return out


#: options renamed in exprflow 0.2 -> their names now: a field, or (nested field, key). The old
#: spellings are accepted with a DeprecationWarning for one release (and read silently from saved configs).
RENAMED_OPTIONS = {"optim": "flow_optim", "p_uncond": "cond_dropout", "n_latent": ("vae", "n_latent"),
                   "likelihood": ("vae", "likelihood")}


def rename_options(options: dict, model: str | None = None, config_cls: type | None = None) -> dict:
    """``options`` with renamed keys under their current names (``model``: warn, naming that model).

    A key is renamed only when ``config_cls`` (when given) has no field of the old name.
    """
    names = None if config_cls is None else {f.name for f in fields(config_cls)}
    out = dict(options)
    for old, new in RENAMED_OPTIONS.items():
        if old not in out or (names is not None and old in names):
            continue
        value = out.pop(old)
        if model is not None:
            where = new if isinstance(new, str) else f"{new[0]}={{{new[1]!r}: ...}}"
            warnings.warn(f"{model}: the option {old!r} is now {where}; the old name goes in the next release.",
                          DeprecationWarning, stacklevel=4)
        if isinstance(new, str):
            out.setdefault(new, value)
        else:
            nested = out.get(new[0])
            nested = dict(nested) if isinstance(nested, dict) else ({} if nested is None else asdict(nested))
            nested.setdefault(new[1], value)
            out[new[0]] = nested
    return out


def config_from_dict(config_cls: type, d: dict):
    """Rebuild a (possibly nested) frozen config dataclass from its ``asdict`` form (renamed options read
    under their current names)."""
    return config_cls(**coerce_nested(config_cls, rename_options(d, config_cls=config_cls)))
