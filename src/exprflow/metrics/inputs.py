"""Validation of the three AnnDatas handed to ``evaluate`` and extraction of their matrices.

Nothing here modifies the user's AnnData: matrices are read (and re-indexed into copies when genes
must be reordered), never written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from exprflow.errors import ExprflowInputError

logger = logging.getLogger(__name__)

MIN_CELLS = 10


@dataclass
class EvaluationInputs:
    """Matrices (cells x genes, genes in the real test order) and condition labels (None = missing)."""

    test: np.ndarray | sp.csr_matrix
    generated: np.ndarray | sp.csr_matrix
    train: np.ndarray | sp.csr_matrix
    test_labels: np.ndarray | None = None
    generated_labels: np.ndarray | None = None
    train_labels: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def prepare_inputs(real_test: AnnData, generated: AnnData, real_train: AnnData, *, layer: str | None,
                   condition_key: str | None, counts: bool) -> EvaluationInputs:
    """Check the inputs (raising ``ExprflowInputError`` with a fix) and return their matrices."""
    named = {"real_test": real_test, "generated": generated, "real_train": real_train}
    for name, adata in named.items():
        if not isinstance(adata, AnnData):
            raise ExprflowInputError(f"{name} must be an AnnData, got {type(adata).__name__}.")
        if adata.n_obs < MIN_CELLS:
            raise ExprflowInputError(
                f"{name} has {adata.n_obs} cells; the evaluation needs at least {MIN_CELLS} cells in each "
                "of real_test, generated and real_train. Generate or hold out more cells."
            )
        if condition_key is not None and condition_key not in adata.obs.columns:
            raise ExprflowInputError(
                f"condition_key={condition_key!r} is not a column of {name}.obs; available columns: "
                f"{list(map(str, adata.obs.columns))}. Pass one of them, or condition_key=None."
            )
    notes: list[str] = []
    genes = real_test.var_names
    test_x = _matrix(real_test, layer, "real_test")
    train_x = _align_genes(_matrix(real_train, layer, "real_train"), real_train.var_names, genes, "real_train", notes)
    gen_x = _align_genes(_matrix(generated, None, "generated"), generated.var_names, genes, "generated", notes)
    for name, x in (("real_test", test_x), ("generated", gen_x), ("real_train", train_x)):
        _check_values(x, name, counts, notes)
    inputs = EvaluationInputs(test=test_x, generated=gen_x, train=train_x, notes=notes)
    if condition_key is not None:
        inputs.test_labels = _labels(real_test, condition_key, "real_test", notes)
        inputs.generated_labels = _labels(generated, condition_key, "generated", notes)
        inputs.train_labels = _labels(real_train, condition_key, "real_train", notes)
    return inputs


def _matrix(adata: AnnData, layer: str | None, name: str):
    if layer is None:
        x = adata.X
        if x is None:
            raise ExprflowInputError(f"{name}.X is empty; put the counts in X or name their layer with layer=.")
    else:
        if layer not in adata.layers:
            raise ExprflowInputError(
                f"layer={layer!r} is not in {name}.layers (available: {list(adata.layers.keys())}); "
                "name the layer that holds the counts, or layer=None to use X."
            )
        x = adata.layers[layer]
    if sp.issparse(x):
        return sp.csr_matrix(x)
    return np.asarray(x)


def _align_genes(x, var_names: pd.Index, reference: pd.Index, name: str, notes: list[str]):
    if var_names.equals(reference):
        return x
    missing = reference.difference(var_names)
    extra = var_names.difference(reference)
    if len(missing) or len(extra) or len(var_names) != len(reference):
        raise ExprflowInputError(
            f"{name} and real_test have different genes: {len(missing)} real_test genes are missing from "
            f"{name} (e.g. {list(map(str, missing[:5]))}) and {len(extra)} {name} genes are not in real_test "
            f"(e.g. {list(map(str, extra[:5]))}). Subset both to the same genes, e.g. "
            f"{name}[:, real_test.var_names], before evaluating."
        )
    if not (var_names.is_unique and reference.is_unique):
        raise ExprflowInputError(
            f"{name} has the real_test genes in another order but var_names are not unique, so they cannot "
            "be matched; call .var_names_make_unique() on all AnnDatas or put the genes in the same order."
        )
    notes.append(f"{name} genes were reordered to match real_test.")
    return x[:, var_names.get_indexer(reference)]


def _check_values(x, name: str, counts: bool, notes: list[str]) -> None:
    values = x.data if sp.issparse(x) else x
    if values.size == 0:
        return
    if not np.all(np.isfinite(values)):
        n_bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
        raise ExprflowInputError(
            f"{name} holds {n_bad} NaN or infinite values; the evaluation needs finite expression values. "
            "Check the generator's sampling (e.g. overflowing rates) or drop those cells."
        )
    if counts and values.min() < 0:
        raise ExprflowInputError(
            f"{name} holds negative values, which are not counts. Pass counts=False for non-count data, "
            "or name the layer that holds raw counts with layer=."
        )
    if counts and name != "generated":
        sample = np.asarray(values).ravel()[:100_000]
        if not np.allclose(sample, np.round(sample)):
            notes.append(f"{name} values are not integers; if they are log-normalised, pass layer= with the "
                         "raw counts, or counts=False for non-count data.")


def _labels(adata: AnnData, key: str, name: str, notes: list[str]) -> np.ndarray:
    """Condition labels as an object array of str, with None where the label is missing."""
    column = adata.obs[key]
    missing = column.isna().to_numpy()
    labels = np.array([None if m else str(v) for v, m in zip(column.to_numpy(), missing)], dtype=object)
    if missing.any():
        notes.append(f"{name}: {int(missing.sum())} cells have no {key!r} label and are left out of the "
                     "per-condition metrics and the label accuracy.")
    return labels
