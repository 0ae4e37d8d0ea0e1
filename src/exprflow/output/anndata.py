"""The AnnData that generators return (scverse conventions: counts in X, conditions in obs, provenance in uns)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from exprflow.errors import ExprflowInputError


def resolve_conditions(
    n_cells: int | None,
    conditions: Mapping[str, int] | Sequence[str] | str | None,
    levels: list[str] | None,
    train_codes: np.ndarray | None,
    rng: np.random.Generator,
) -> tuple[int, np.ndarray | None]:
    """Turn the user's request into ``(n, codes)``.

    ``conditions`` may be a mapping level -> number of cells, a sequence of level names (one per
    cell), or one level name (with ``n_cells``). With ``n_cells`` only, a conditional model draws
    levels in proportion to their training frequencies.
    """
    if levels is None:
        if conditions is not None:
            raise ExprflowInputError("This model was trained without a condition_key; call generate(n_cells=...) only.")
        if n_cells is None or int(n_cells) < 1:
            raise ExprflowInputError("Give n_cells >= 1.")
        return int(n_cells), None
    index = {name: code for code, name in enumerate(levels)}
    if conditions is None:
        if n_cells is None or int(n_cells) < 1:
            raise ExprflowInputError("Give n_cells >= 1, or conditions={level: n_cells, ...}.")
        freq = np.bincount(train_codes, minlength=len(levels)) / len(train_codes)
        return int(n_cells), rng.choice(len(levels), size=int(n_cells), p=freq)
    if isinstance(conditions, str):
        if n_cells is None:
            raise ExprflowInputError("With a single condition level, also give n_cells.")
        labels = [conditions] * int(n_cells)
    elif isinstance(conditions, Mapping):
        labels = [name for name, k in conditions.items() for _ in range(int(k))]
    else:
        labels = [str(c) for c in conditions]
    unknown = sorted({str(lab) for lab in labels} - set(index))
    if unknown:
        raise ExprflowInputError(
            f"Unknown condition level(s) {unknown[:5]}; the model knows: {', '.join(levels)}."
        )
    if not labels:
        raise ExprflowInputError("The requested conditions hold no cells.")
    return len(labels), np.array([index[str(lab)] for lab in labels], dtype=np.int64)


def new_name_token() -> str:
    """Eight random hex digits: the part of generated cell names that differs between calls."""
    return secrets.token_hex(4)


def cell_names(n: int, name_prefix: str = "gen", token: str | None = None, start: int = 0) -> list[str]:
    """Generated cell names ``{name_prefix}_{token}_{i}``: unique within a call and across calls, so that
    generations concatenate without duplicate ``obs_names`` (``token``: :func:`new_name_token` when None)."""
    if not isinstance(name_prefix, str) or not name_prefix:
        raise ExprflowInputError(f"name_prefix must be a non-empty string, got {name_prefix!r}.")
    token = new_name_token() if token is None else token
    return [f"{name_prefix}_{token}_{i}" for i in range(start, start + n)]


def generated_adata(
    counts: sp.csr_matrix,
    var_names: list[str],
    *,
    condition_key: str | None,
    levels: list[str] | None,
    codes: np.ndarray | None,
    provenance: dict,
    layer_name: str | None = None,
    name_prefix: str = "gen",
) -> ad.AnnData:
    """An AnnData of generated cells: integer sparse counts in X, conditions and ``source`` in obs, cells
    named ``{name_prefix}_{token}_{i}`` (see :func:`cell_names`)."""
    n = counts.shape[0]
    obs = pd.DataFrame(index=cell_names(n, name_prefix))
    if condition_key is not None and codes is not None:
        obs[condition_key] = pd.Categorical.from_codes(codes, categories=levels)
    obs["source"] = "generated"
    adata = ad.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=list(var_names)))
    if layer_name:
        adata.layers[layer_name] = counts.copy()
    adata.uns["exprflow"] = provenance
    return adata


def model_repr(model) -> str:
    """What ``repr(model)`` shows: the model, whether it is trained, its data and setup, its backbone."""
    data = getattr(model, "data", None) or getattr(getattr(model, "course", None), "data", None)
    state = "not trained"
    if model.is_trained:
        seconds = getattr(model, "train_seconds", None)
        state = "trained" + (f" in {seconds:.1f} s" if seconds else " (loaded)" if data is None else "")
    lines = [f"{type(model).__name__} ({state})"]
    cells = f"{data.n_cells:,} training cells x " if data is not None and hasattr(data, "n_cells") else ""
    setup = model.setup
    lines.append(f"  data: {cells}{len(model.var_names):,} genes, counts in "
                 f"{'X' if setup.layer is None else 'layers[' + repr(setup.layer) + ']'}")
    for name, value in vars(setup).items():
        if name != "layer" and value is not None:
            lines.append(f"  {name}: {value!r}")
    levels = getattr(model, "levels", None)
    if levels:
        shown = ", ".join(map(str, levels[:6])) + (", ..." if len(levels) > 6 else "")
        lines.append(f"  condition levels: {len(levels)} ({shown})")
    space = getattr(model, "condition_space", None)
    for key, key_levels in zip(space.keys, space.levels) if space is not None else ():
        lines.append(f"  {key}: {len(key_levels)} levels ({', '.join(key_levels[:6])}{', ...' if len(key_levels) > 6 else ''})")
    backbone = getattr(model.config, "backbone", None)
    if backbone is not None:
        lines.append(f"  backbone: {backbone}")
    return "\n".join(lines)
