"""Streamed generation: millions of cells written to disk in chunks, bounded memory, resumable.

::

    generate_to_file(model, "big.h5ad", n_cells=1_000_000, chunk_size=50_000, seed=0, resume=True)

The request (``n_cells`` and/or ``conditions``, as in :meth:`FlowModel.generate`) is cut into chunks of
``chunk_size`` cells in request order. Chunk ``k`` is ``model.generate(<its cells>, seed=chunk_seed(seed, k))``
and is stored as a complete part file (:class:`~exprflow.data.h5ad_parts.PartStore`) in a folder next
to the output; when all parts exist they are assembled into the output ``.h5ad`` under a temporary
name and moved onto the final name.

Contract (tested):
- the file depends only on (model, request, seed, chunk_size, sampler options): a run interrupted at any
  point and resumed with ``resume=True`` writes exactly the cells of an uninterrupted run;
- rows ``[k * chunk_size, (k + 1) * chunk_size)`` equal ``model.generate(<the same cells>,
  seed=chunk_seed(seed, k))``; the file is therefore NOT the one-shot ``generate(n, seed=seed)``
  (which draws every chunk from one random stream), except in distribution;
- with ``n_cells`` only, a conditional model draws each chunk's levels from the training frequencies
  with that chunk's seed (totals per level are random, as in ``generate``);
- memory: one chunk (model activations + its counts) plus one part while assembling, and a few bytes
  per cell for condition codes; never the whole output.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from exprflow import __version__
from exprflow.data.h5ad_parts import PartStore, write_h5ad_from_parts
from exprflow.errors import ExprflowInputError
from exprflow.output.anndata import cell_names

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 50_000


def chunk_seed(seed: int, k: int) -> int:
    """The seed of chunk ``k``: independent streams per chunk, derived from ``(seed, k)`` only."""
    return int(np.random.SeedSequence([int(seed), int(k)]).generate_state(1)[0])


def parts_folder(path: str | os.PathLike) -> Path:
    """Where the parts of an unfinished ``path`` are kept (a hidden folder beside it)."""
    path = Path(path)
    return path.with_name(f".{path.name}.parts")


def _plan(n_cells: int | None, conditions, levels: list[str] | None) -> tuple[int, object]:
    """The request as ``(n, spec)``: spec is None (unconditional / training frequencies), a list of
    ``(level, count)`` runs in request order, or an array of level names (one per cell)."""
    if conditions is None:
        if n_cells is None or int(n_cells) < 1:
            raise ExprflowInputError("Give n_cells >= 1 (or conditions={level: n_cells, ...}).")
        return int(n_cells), None
    if levels is None:
        raise ExprflowInputError("This model was trained without a condition_key; give n_cells only.")
    if isinstance(conditions, str):
        if n_cells is None:
            raise ExprflowInputError("With a single condition level, also give n_cells.")
        runs = [(conditions, int(n_cells))]
    elif isinstance(conditions, Mapping):
        runs = [(str(k), int(v)) for k, v in conditions.items() if int(v) > 0]
    else:
        labels = np.asarray([str(c) for c in conditions], dtype=object)
        unknown = sorted(set(labels) - set(levels))
        if unknown:
            raise ExprflowInputError(f"Unknown condition level(s) {unknown[:5]}; the model knows: {', '.join(levels)}.")
        return len(labels), labels
    unknown = sorted({name for name, _ in runs} - set(levels))
    if unknown:
        raise ExprflowInputError(f"Unknown condition level(s) {unknown[:5]}; the model knows: {', '.join(levels)}.")
    n = sum(k for _, k in runs)
    if n < 1:
        raise ExprflowInputError("The requested conditions hold no cells.")
    return n, runs


def _chunk_request(spec, start: int, stop: int) -> dict:
    """``generate`` keyword arguments for cells ``[start, stop)`` of the request."""
    if spec is None:
        return {"n_cells": stop - start}
    if isinstance(spec, np.ndarray):
        return {"conditions": list(spec[start:stop])}
    request, offset = {}, 0
    for name, count in spec:  # the runs overlapping [start, stop), in request order
        lo, hi = max(start, offset), min(stop, offset + count)
        if hi > lo:
            request[name] = request.get(name, 0) + hi - lo
        offset += count
    return {"conditions": request}


def _chunks(n: int, chunk_size: int) -> Iterator[tuple[int, int, int]]:
    for k, start in enumerate(range(0, n, chunk_size)):
        yield k, start, min(start + chunk_size, n)


def generate_to_file(
    model,
    path: str | os.PathLike,
    n_cells: int | None = None,
    conditions: Mapping[str, int] | Sequence[str] | str | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    seed: int = 0,
    resume: bool = False,
    overwrite: bool = False,
    progress_bar: bool = True,
    name_prefix: str = "gen",
    **generate_kwargs,
) -> Path:
    """Generate cells in chunks into the ``.h5ad`` file ``path`` (see the module docstring).

    Parameters
    ----------
    model
        A trained generator with ``generate(n_cells=, conditions=, seed=, **generate_kwargs)``.
    n_cells, conditions
        The request, as in :meth:`~exprflow.models.base.FlowModel.generate`.
    chunk_size
        Cells generated and stored per part (memory scales with it, not with ``n_cells``).
    resume
        Continue an interrupted run of the same request (its parts are kept beside ``path``);
        a different request refuses to resume.
    overwrite
        Replace an existing ``path`` (and discard parts of an interrupted run).
    name_prefix
        Cells are named ``{name_prefix}_{token}_{i}``; the token is a digest of the request (model
        weights, cells, seed, chunk size), so a resumed run writes the same names and different requests
        do not share names.
    generate_kwargs
        Passed to ``generate`` for every chunk (``n_steps``, ``solver``, ``guidance``, ``decode``, ...).
    """
    from tqdm.auto import tqdm

    path = Path(path)
    if path.suffix.lower() != ".h5ad":
        raise ExprflowInputError(f"The output must be an .h5ad file, got '{path}'.")
    if int(chunk_size) < 1:
        raise ExprflowInputError(f"chunk_size must be a positive integer, got {chunk_size}.")
    cell_names(0, name_prefix)  # validates the prefix
    if not getattr(model, "is_trained", True):
        raise ExprflowInputError("The model is not trained yet: call train() (or load a trained model) first.")
    if path.exists() and not overwrite:
        raise ExprflowInputError(f"{path} already exists. Pass overwrite=True (--overwrite) or choose another file.")
    if path.parent.exists() and not path.parent.is_dir():
        raise ExprflowInputError(f"Cannot write into '{path.parent}': it is not a directory.")
    path.parent.mkdir(parents=True, exist_ok=True)
    n, spec = _plan(n_cells, conditions, model.levels)
    manifest = {
        "model": type(model).__name__, "config": asdict(model.config) if hasattr(model.config, "__dataclass_fields__")
        else None, "fingerprint": model_fingerprint(model), "n_cells": n,
        "request": None if spec is None else (list(spec) if isinstance(spec, np.ndarray) else [list(r) for r in spec]),
        "seed": int(seed), "chunk_size": int(chunk_size), "generate_kwargs": generate_kwargs,
    }
    manifest = _jsonable(manifest)
    store = PartStore(parts_folder(path))
    if store.exists() and not overwrite:
        if not resume:
            raise ExprflowInputError(
                f"An interrupted run left parts in '{store.folder}'. Pass resume=True (--resume) to continue it, "
                "or overwrite=True (--overwrite) to start again."
            )
        if store.manifest() != manifest:
            raise ExprflowInputError(
                f"The parts in '{store.folder}' belong to a different request (model, cells, seed, chunk size or "
                "sampler options differ), so they cannot be resumed. Repeat that request, or pass overwrite=True."
            )
    else:
        store.start(manifest)
    n_parts = -(-n // int(chunk_size))
    codes_of = {name: code for code, name in enumerate(model.levels or [])}
    with tqdm(total=n, unit="cells", desc="generating", disable=not progress_bar) as bar:
        for k, start, stop in _chunks(n, int(chunk_size)):
            if not store.done(k):
                chunk = model.generate(**_chunk_request(spec, start, stop), seed=chunk_seed(seed, k), **generate_kwargs)
                key = model.setup.condition_key
                codes = None
                if key is not None and key in chunk.obs:
                    codes = np.asarray([codes_of[str(v)] for v in chunk.obs[key]], dtype=np.int64)
                store.write(k, chunk.X, codes)
                del chunk
            bar.update(stop - start)
    provenance = {
        "model": type(model).__name__, "version": __version__, "seed": int(seed), "chunk_size": int(chunk_size),
        "n_cells": n, "n_chunks": n_parts, "chunk_seeds": "numpy SeedSequence([seed, chunk index])",
        "streamed": True, **manifest["generate_kwargs"], "config": manifest["config"],
    }
    named_by = {k: manifest[k] for k in ("fingerprint", "n_cells", "request", "seed", "chunk_size")}
    token = hashlib.sha256(json.dumps(named_by, sort_keys=True).encode()).hexdigest()[:8]
    tmp_out = write_h5ad_from_parts(store, n_parts, path, model.var_names, condition_key=model.setup.condition_key,
                                    levels=model.levels, uns={"exprflow": provenance},
                                    obs_prefix=f"{name_prefix}_{token}_")
    store.remove()
    logger.info("%d cells written to %s in %d chunks", n, path, n_parts)
    return tmp_out


def model_fingerprint(model) -> str:
    """SHA-256 of the model's gene names and sampling weights: parts of one model are never resumed with another.

    The EMA weights stand for the backbone when present (a loaded model holds them as its backbone),
    so a model trained in this session and the same model loaded from disk agree.
    """

    digest = hashlib.sha256("\x00".join(model.var_names).encode())
    tensors = model._tensors() if hasattr(model, "_tensors") else {}
    if any(k.startswith("ema.") for k in tensors):
        tensors = {("backbone." + k[4:] if k.startswith("ema.") else k): v for k, v in tensors.items()
                   if not k.startswith("backbone.")}
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _jsonable(value):
    """The manifest as JSON would read it back (tuples -> lists, numpy scalars -> Python)."""
    import json

    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
