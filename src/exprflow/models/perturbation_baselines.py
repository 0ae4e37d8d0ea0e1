"""Baselines for perturbation response (the rows PerturbationFlow is compared with).

- :func:`identity_prediction`: the control cells themselves as the prediction (no response).
- :class:`MeanShift`: gene space. ``y = log1p(counts / l * 1e4)``; ``delta_p = mean(y | p) - mean(y | ctrl)``
  over the training cells; a control cell is predicted as ``max(y + delta_p, 0)``, mapped back to counts
  with its own library size (``expm1(y') * l / 1e4``, then unbiased stochastic rounding).
- :class:`LatentArithmetic` (scGen-style vector arithmetic, Lotfollahi et al. 2019): the same shift in a
  trained :class:`~exprflow.models.PerturbationFlow`'s standardised latent state ``[z, log l]``; predicted
  states are decoded by its count decoder.

With cell types, both shifts weigh every cell type that has control AND perturbed cells equally (scGen
balances cell types by resampling them to equal size, which gives these means): ``delta =
mean_t mean(. | p, t) - mean_t mean(. | ctrl, t)``. Without cell types the means are pooled over cells.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from exprflow.data.perturbation import PerturbationData, pair_groups, prepare_perturbation
from exprflow.errors import ExprflowInputError
from exprflow.metrics.reference import TARGET_SUM, normalise_rows


def identity_prediction(adata_ctrl: AnnData, layer: str | None = None) -> sp.csr_matrix:
    """The control counts unchanged (a copy), as the prediction of the perturbed cells."""
    raw = adata_ctrl.layers[layer] if layer else adata_ctrl.X
    return sp.csr_matrix(raw, dtype=np.float32, copy=True)


def balanced_shift(values: np.ndarray, data: PerturbationData) -> np.ndarray:
    """``(n_perturbations, D)`` shifts of ``values`` (one row per kept cell): perturbed minus control means,
    weighing the cell types that have both arms equally (module docstring)."""
    groups = pair_groups(data)
    deltas = []
    for p in range(len(data.perturbations)):
        members = np.flatnonzero(groups.perturbation == p)
        pert = [values[groups.group == g].mean(0) for g in members]
        ctrl = [values[groups.controls[g]].mean(0) for g in members]
        deltas.append(np.mean(pert, axis=0) - np.mean(ctrl, axis=0))
    return np.asarray(deltas)


def _code(data_perturbations: list[str], condition: str) -> int:
    if str(condition) not in data_perturbations:
        raise ExprflowInputError(f"Unknown perturbation {condition!r}; known: {data_perturbations}.")
    return data_perturbations.index(str(condition))


def stochastic_round(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``floor(v) + Bernoulli(v - floor(v))``: integer counts with the same expectation as ``v``."""
    low = np.floor(values)
    return (low + (rng.random(values.shape) < values - low)).astype(np.int32)


class MeanShift:
    """Gene-space mean shift in log1p-normalised expression (module docstring)."""

    def fit(self, adata: AnnData, *, condition_key: str, control_group: str, layer: str | None = None,
            cell_type_key: str | None = None) -> "MeanShift":
        data = prepare_perturbation(adata, condition_key=condition_key, control_group=control_group, layer=layer,
                                    cell_type_key=cell_type_key)
        y = np.asarray(normalise_rows(data.counts.X).toarray())
        self.delta = balanced_shift(y, data)
        self.perturbations, self.layer = data.perturbations, layer
        return self

    def predict_normalised(self, adata_ctrl: AnnData, condition: str) -> np.ndarray:
        """``max(log1p(counts / l * 1e4) + delta, 0)`` per control cell (dense, cells x genes)."""
        y = np.asarray(normalise_rows(identity_prediction(adata_ctrl, self.layer)).toarray())
        return np.maximum(y + self.delta[_code(self.perturbations, condition)], 0.0)

    def predict(self, adata_ctrl: AnnData, condition: str, seed: int = 0) -> sp.csr_matrix:
        """Integer counts: ``expm1(predicted y) * l / 1e4`` per cell, stochastically rounded."""
        library = np.asarray(identity_prediction(adata_ctrl, self.layer).sum(axis=1)).ravel()
        expected = np.expm1(self.predict_normalised(adata_ctrl, condition)) * (library[:, None] / TARGET_SUM)
        return sp.csr_matrix(stochastic_round(expected, np.random.default_rng(seed)))


class LatentArithmetic:
    """scGen-style ``s_ctrl + delta`` in a trained PerturbationFlow's latent state, decoded to counts."""

    def fit(self, model) -> "LatentArithmetic":
        """Shift from ``model``'s training cells (the model must still hold them: not a loaded model)."""
        if model.data is None:
            raise ExprflowInputError("LatentArithmetic needs a model trained in this session (it reads its training cells).")
        self.model = model
        self.delta = balanced_shift(model.training_states(), model.pdata)
        return self

    def predict(self, adata_ctrl: AnnData, condition: str, seed: int = 0, decode: str = "sample") -> sp.csr_matrix:
        states, _ = self.model.encode_states(adata_ctrl)
        moved = states + self.delta[self.model._perturbation_code(condition)]
        values = self.model.decode_states(moved.astype(np.float32), sample=decode == "sample", seed=seed)
        return sp.csr_matrix(values.astype(np.int32 if decode == "sample" else np.float32))
