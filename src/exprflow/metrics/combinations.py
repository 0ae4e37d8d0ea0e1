"""Evaluation over label combinations (cell type x donor ...) and the held-out-combination protocol.

- :func:`evaluate_combinations` runs the protocol of docs/evaluation.md unchanged, with the combination
  of several obs columns as its condition: per-condition metrics over every combination with >= 20
  real test cells (and their average), ratios to the floor included.
- The held-out-combination protocol hides every cell of one combination (one cell type of one donor)
  from training (:func:`hold_out_combination`); a model with several condition keys then generates that
  combination from the attributes it saw separately, and :func:`score_against_hidden` compares
  candidate cell sets with the hidden real cells in a reference space fitted on the training cells:
  ``energy`` and ``c2st_knn`` against one random half of the hidden cells, the other half (real cells of
  the same combination) giving the floor, as many cells in each set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd

from exprflow.errors import ExprflowInputError
from exprflow.metrics.distances import energy
from exprflow.metrics.protocol import evaluate
from exprflow.metrics.reference import N_COMPONENTS, ReferenceSpace
from exprflow.metrics.two_sample import c2st_knn

COMBINATION_KEY = "combination"
SEPARATOR = " | "


def combination_labels(obs: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    """One label per cell joining its values of ``keys`` (``"B | donor2"``); cells missing a key get NaN."""
    missing = [k for k in keys if k not in obs]
    if missing:
        raise ExprflowInputError(f"obs has no column(s) {missing}; available: {', '.join(obs.columns) or 'none'}.")
    values = obs[list(keys)].astype(object)
    labels = values.astype(str).agg(SEPARATOR.join, axis=1)
    return labels.where(values.notna().all(axis=1))


def _with_combination(adata: ad.AnnData, keys: Sequence[str]) -> ad.AnnData:
    """A new AnnData sharing ``adata``'s matrices, with the combination label as an obs column."""
    obs = pd.DataFrame({COMBINATION_KEY: combination_labels(adata.obs, keys).to_numpy()}, index=adata.obs_names)
    out = ad.AnnData(X=adata.X, obs=obs, var=pd.DataFrame(index=adata.var_names))
    for name, layer in adata.layers.items():
        out.layers[name] = layer
    keep = obs[COMBINATION_KEY].notna().to_numpy()
    return out if keep.all() else out[keep]


def evaluate_combinations(real_test: ad.AnnData, generated: ad.AnnData, real_train: ad.AnnData,
                          keys: Sequence[str], **kwargs) -> dict:
    """The protocol's per-condition metrics over label combinations of ``keys`` (see module docstring).

    Cells missing any of the keys are left out. ``kwargs`` go to :func:`exprflow.metrics.evaluate`
    (``layer``, ``counts``, ``seed``, ``floor``). The result is the protocol's, with
    ``per_condition`` keyed by combination labels and ``combination_keys`` added.
    """
    result = evaluate(*(_with_combination(a, keys) for a in (real_test, generated, real_train)),
                      condition_key=COMBINATION_KEY, **kwargs)
    result["combination_keys"] = list(keys)
    return result


def combination_table(result: dict, metric: str = "energy") -> pd.DataFrame:
    """Per combination of an :func:`evaluate_combinations` result: attributes, test cells, ``metric``,
    its floor and their ratio."""
    keys = result["combination_keys"]
    rows = []
    for label, values in result["per_condition"].items():
        floor = result.get("per_condition_floor", {}).get(label, {}).get(metric)
        value = values.get(metric)
        rows.append({**dict(zip(keys, label.split(SEPARATOR))), "n_test": result["per_condition_n"][label]["n_test"],
                     metric: value, "floor": floor,
                     "ratio": None if value is None or not floor else value / floor})
    return pd.DataFrame(rows)


def hold_out_combination(adata: ad.AnnData, combination: Mapping[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(kept, hidden)``: ``hidden`` are the cells matching every attribute of ``combination``."""
    match = np.ones(adata.n_obs, dtype=bool)
    for key, level in combination.items():
        if key not in adata.obs:
            raise ExprflowInputError(f"obs has no column {key!r}; available: {', '.join(adata.obs.columns)}.")
        match &= (adata.obs[key].astype(str) == str(level)).to_numpy()
    if not match.any():
        raise ExprflowInputError(f"No cell matches the combination {dict(combination)}.")
    return np.flatnonzero(~match), np.flatnonzero(match)


def _matrix(adata: ad.AnnData, layer: str | None):
    return adata.layers[layer] if layer else adata.X


def score_against_hidden(hidden: ad.AnnData, candidates: Mapping[str, ad.AnnData], train: ad.AnnData, *,
                         layer: str | None = None, seed: int = 0) -> dict:
    """``energy``, ``c2st_knn`` and ``energy / floor`` of each candidate against the hidden real cells.

    ``hidden``: the held-out combination's real cells; ``candidates``: name -> cells (counts in ``X``,
    or in ``layer`` for real cells that have it); ``train``: the training cells (the reference space is
    fitted on them). The hidden cells are split at random into halves A and B; every candidate (and
    half A, the ``floor`` row) is compared with B, subsampled to the size of A.
    """
    if hidden.n_obs < 20:
        raise ExprflowInputError(f"The hidden combination has {hidden.n_obs} cells; at least 20 are needed.")
    rng = np.random.default_rng(seed)
    order = rng.permutation(hidden.n_obs)
    half = hidden.n_obs // 2
    space = ReferenceSpace(N_COMPONENTS).fit(_matrix(train, layer))
    z_hidden = space.transform(_matrix(hidden, layer))
    z_a, z_b = z_hidden[order[:half]], z_hidden[order[half: 2 * half]]

    def scores(z: np.ndarray) -> dict:
        if z.shape[0] < half:
            raise ExprflowInputError(f"A candidate has {z.shape[0]} cells; give at least {half}.")
        z = z[rng.permutation(z.shape[0])[:half]]
        return {"energy": energy(z, z_b), "c2st_knn": c2st_knn(z_b, z, seed=seed)}

    out = {"floor": scores(z_a), "n_hidden": int(hidden.n_obs), "n_compared": int(half)}
    for name, cells in candidates.items():
        matrix = _matrix(cells, layer) if layer and layer in cells.layers else cells.X
        out[name] = scores(space.transform(matrix))
        out[name]["energy_ratio"] = out[name]["energy"] / out["floor"]["energy"]
    return out
