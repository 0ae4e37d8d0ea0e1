"""Label combinations of several condition keys: encoding the training cells, reading requests.

A request for a model with several condition keys (``condition_key=["cell_type", "donor"]``) is

- a DataFrame with one column per requested attribute (a subset of the keys) and optionally an
  ``n_cells`` column (cells per row; without it each row is one cell, so ``adata.obs`` of real cells
  asks for their combinations), or
- a dict attribute -> level (``{"cell_type": "B", "donor": "2"}``) with ``n_cells``.

Attributes left out, or missing (NaN) in a row, are marginalised: they take their null code (see
:mod:`exprflow.flows.conditions`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from anndata import AnnData

from exprflow.data.counts import drop_unused_levels
from exprflow.data.validation import check_conditions
from exprflow.errors import ExprflowInputError
from exprflow.flows.conditions import ConditionSpace

COUNT_COLUMN = "n_cells"


def normalize_condition_key(key: str | Sequence[str] | None) -> str | list[str] | None:
    """One key as a string, several as a list (a list of one is one key); duplicates refused."""
    if key is None or isinstance(key, str):
        return key
    keys = [str(k) for k in key]
    if len(set(keys)) != len(keys):
        raise ExprflowInputError(f"condition_key lists a key twice: {keys}.")
    if not keys:
        return None
    return keys[0] if len(keys) == 1 else keys


def require_single_key(key, model: str) -> None:
    """Refuse several condition keys for a model whose condition is not a label of the cell."""
    if isinstance(key, (list, tuple)) and len(key) > 1:
        raise ExprflowInputError(
            f"{model} takes one condition_key, got {list(key)}: its condition has a role of its own "
            "(perturbation, population or lineage). Several keys work with LatentFlow, StateFlow and "
            "PathwayFlow; combine the labels into one obs column to use them here."
        )


def encode_combinations(adata: AnnData, keys: Sequence[str], kept: np.ndarray) -> tuple[ConditionSpace, np.ndarray]:
    """The condition space of ``keys`` and the packed code of each kept cell (rows ``kept`` of adata)."""
    levels, digits = [], []
    for key in keys:
        codes, lv = check_conditions(adata, key)
        codes, lv = drop_unused_levels(codes[kept], lv, key)
        levels.append(tuple(lv))
        digits.append(codes)
    space = ConditionSpace(tuple(keys), tuple(levels))
    return space, space.pack(np.stack(digits, axis=1))


def resolve_combinations(n_cells: int | None, conditions, space: ConditionSpace, train_codes: np.ndarray | None,
                         rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """Turn a request (see module docstring) into ``(n, packed codes)``.

    With ``conditions=None``, combinations are drawn with their training frequencies.
    """
    if conditions is None:
        if n_cells is None or int(n_cells) < 1:
            raise ExprflowInputError("Give n_cells >= 1, or conditions (a DataFrame or a dict attribute -> level).")
        return int(n_cells), rng.choice(np.asarray(train_codes), size=int(n_cells))
    if isinstance(conditions, Mapping):
        if n_cells is None or int(n_cells) < 1:
            raise ExprflowInputError("With conditions={attribute: level}, also give n_cells >= 1.")
        table = pd.DataFrame({k: [v] for k, v in conditions.items()})
        table[COUNT_COLUMN] = int(n_cells)
    elif isinstance(conditions, pd.DataFrame):
        table = conditions
    else:
        raise ExprflowInputError(
            f"This model has several condition keys {list(space.keys)}: pass conditions as a DataFrame of "
            "combinations (columns: attributes, optional n_cells) or a dict attribute -> level."
        )
    columns = [c for c in table.columns if c != COUNT_COLUMN]
    unknown = sorted(set(columns) - set(space.keys))
    if unknown:
        raise ExprflowInputError(f"Unknown condition attribute(s) {unknown}; the model knows {list(space.keys)}.")
    digits = np.tile(space.sizes, (len(table), 1))
    for col in columns:
        k = space.key_index(col)
        index = {name: code for code, name in enumerate(space.levels[k])}
        values = table[col]
        present = values.notna().to_numpy()
        labels = values.astype(object)[present].astype(str)
        bad = sorted(set(labels) - set(index))
        if bad:
            raise ExprflowInputError(
                f"Unknown level(s) {bad[:5]} of {col!r}; the model knows: {', '.join(space.levels[k])}."
            )
        digits[present, k] = labels.map(index).to_numpy()
    counts = np.ones(len(table), dtype=np.int64)
    if COUNT_COLUMN in table.columns:
        counts = table[COUNT_COLUMN].to_numpy().astype(np.int64)
        if (counts < 0).any():
            raise ExprflowInputError(f"The {COUNT_COLUMN} column holds negative numbers.")
    codes = np.repeat(space.pack(digits), counts)
    if codes.size == 0:
        raise ExprflowInputError("The requested conditions hold no cells.")
    return int(codes.size), codes


def combination_obs(space: ConditionSpace, codes: np.ndarray, index) -> pd.DataFrame:
    """One categorical column per attribute (NaN where the attribute was marginalised)."""
    digits = space.unpack(codes)
    obs = pd.DataFrame(index=index)
    for k, key in enumerate(space.keys):
        d = digits[:, k]
        obs[key] = pd.Categorical.from_codes(np.where(d == space.sizes[k], -1, d), categories=list(space.levels[k]))
    return obs


def combination_counts(space: ConditionSpace, codes: np.ndarray) -> pd.DataFrame:
    """The distinct combinations in ``codes`` with their number of cells (a request DataFrame)."""
    values, counts = np.unique(np.asarray(codes), return_counts=True)
    table = combination_obs(space, values, range(len(values)))
    table[COUNT_COLUMN] = counts
    return table


def batch_codes(obs: pd.DataFrame, batch_key: str | None, levels: Sequence[str] | None) -> np.ndarray | None:
    """Codes of ``obs[batch_key]`` among the training batches ``levels`` (None without a batch key)."""
    if batch_key is None:
        return None
    if batch_key not in obs:
        raise ExprflowInputError(f"adata.obs has no column {batch_key!r} (the model's batch_key).")
    index = {name: code for code, name in enumerate(levels)}
    labels = obs[batch_key].astype(str)
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise ExprflowInputError(f"Unknown batch(es) {unknown[:5]}; the model knows {list(levels)}.")
    return labels.map(index).to_numpy().astype(np.int64)


@dataclass(frozen=True)
class AttributeGuidance:
    """Classifier-free guidance weights per condition attribute, and how they compose (``"joint"`` or
    ``"product"``; :mod:`exprflow.flows.conditions`)."""

    weights: dict
    composition: str = "joint"


def check_guidance(guidance, composition: str, space: ConditionSpace | None) -> float | AttributeGuidance:
    """Guidance as a float, or (a dict attribute -> weight, models with several condition keys only) an
    :class:`AttributeGuidance`, checked together with ``composition`` (clear errors)."""
    from exprflow.flows.conditions import COMPOSITIONS

    if composition not in COMPOSITIONS:
        raise ExprflowInputError(f"composition must be one of {COMPOSITIONS}, got {composition!r}.")
    if not isinstance(guidance, Mapping):
        return float(guidance)
    if space is None:
        raise ExprflowInputError("Guidance per attribute needs several condition keys; give one float.")
    for key in guidance:
        space.key_index(key)
    return AttributeGuidance({str(k): float(w) for k, w in guidance.items()}, composition)
