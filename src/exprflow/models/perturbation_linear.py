"""``ridge``: a linear map from a cell type's control profile to its perturbation response.

In the spirit of the linear baseline of Ahlmann-Eltze, Huber and Anders (2025, "Deep-learning-based gene
perturbation effect prediction does not yet outperform simple linear baselines"), whose model is
``Y ~ G W P^T + b`` with ``G`` gene embeddings (the top principal components of the training data),
``P`` condition embeddings and ``W`` fitted by ridge regression. Here the conditions are the training
cell types of one perturbation ``p`` (the response is predicted for an unseen cell type):

- ``y = log1p(counts / l * 1e4)``; ``G``: the first ``n_components`` principal axes (genes x K) of the
  training cells' ``y``;
- per paired training type ``t``: ``r_t = delta_{p,t} - delta_p`` (its response minus the balanced mean
  shift ``delta_p``, so ``b = delta_p``) and ``e_t = G^T (c_t - c_bar)`` (its control mean ``c_t``
  embedded, centred on the mean ``c_bar`` over the paired types);
- ``W = (G^T G + lambda I)^-1 G^T R P (P^T P + lambda I)^-1`` with ``R = [r_t]``, ``P = [e_t]``.

A control population with mean ``c`` is predicted as ``max(y + delta_p + G W G^T (c - c_bar), 0)``
per cell; with ``cell_type_key`` in the control cells' obs each type is its own population. With
``lambda -> inf`` this is the mean shift.
"""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from exprflow.data.perturbation import PerturbationData, pair_groups
from exprflow.errors import ExprflowInputError
from exprflow.models.perturbation_baselines import BASELINES, GeneSpaceBaseline, _code


@BASELINES.register("ridge")
class RidgeBaseline(GeneSpaceBaseline):
    """Ridge map of a cell type's embedded control profile to its response (module docstring).

    Parameters
    ----------
    n_components
        Number of principal components ``K`` of the gene embedding (Ahlmann-Eltze et al.: 10).
    ridge_lambda
        The ridge penalty ``lambda`` (Ahlmann-Eltze et al.: 0.1).
    """

    name = "ridge"

    def __init__(self, n_components: int = 10, ridge_lambda: float = 0.1) -> None:
        if n_components < 1 or ridge_lambda < 0:
            raise ExprflowInputError(f"ridge needs n_components >= 1 and ridge_lambda >= 0, got {n_components}, "
                                     f"{ridge_lambda}.")
        self.n_components, self.ridge_lambda = int(n_components), float(ridge_lambda)

    def _fit(self, y: np.ndarray, data: PerturbationData) -> None:
        if data.cell_types is None:
            raise ExprflowInputError("ridge maps a cell type's control profile to its response: give cell_type_key "
                                     "(at least 2 cell types with control and perturbed cells).")
        self.cell_type_key = data.cell_type_key
        centre = y.mean(0)
        k = min(self.n_components, *y.shape)
        _, _, vt = np.linalg.svd(y - centre, full_matrices=False) if y.shape[1] <= 4000 else _randomized(y - centre, k)
        self.genes = vt[:k].T  # G: genes x K, orthonormal columns
        groups = pair_groups(data)
        self.delta, self.control_centre, self.weights = [], [], []
        lam = self.ridge_lambda
        for p in range(len(data.perturbations)):
            members = np.flatnonzero(groups.perturbation == p)
            if members.size < 2:
                raise ExprflowInputError(f"ridge needs at least 2 cell types with control and {data.perturbations[p]!r} "
                                         f"cells; found {members.size}.")
            ctrl = np.array([y[groups.controls[g]].mean(0) for g in members])
            shift = np.array([y[groups.group == g].mean(0) for g in members]) - ctrl
            delta, c_bar = shift.mean(0), ctrl.mean(0)
            emb = (ctrl - c_bar) @ self.genes  # P: types x K
            resp = (shift - delta).T  # R: genes x types
            gram_g = self.genes.T @ self.genes + lam * np.eye(k)
            gram_p = emb.T @ emb + lam * np.eye(k)
            w = np.linalg.solve(gram_g, self.genes.T @ resp @ emb) @ np.linalg.pinv(gram_p)
            self.delta.append(delta)
            self.control_centre.append(c_bar)
            self.weights.append(w)

    def response(self, control_mean: np.ndarray, condition: str) -> np.ndarray:
        """Predicted gene-space response ``delta_p + G W G^T (c - c_bar)`` of a population with control mean ``c``."""
        p = _code(self.perturbations, condition)
        emb = (np.asarray(control_mean, float) - self.control_centre[p]) @ self.genes
        return self.delta[p] + self.genes @ (self.weights[p] @ emb)

    def predict_normalised(self, adata_ctrl: AnnData, condition: str) -> np.ndarray:
        y = self.control_normalised(adata_ctrl)
        if self.cell_type_key in adata_ctrl.obs.columns:
            labels = adata_ctrl.obs[self.cell_type_key].astype(str).to_numpy()
        else:
            labels = np.zeros(adata_ctrl.n_obs, dtype=str)
        out = np.empty_like(y)
        for label in np.unique(labels):
            rows = labels == label
            out[rows] = y[rows] + self.response(y[rows].mean(0), condition)
        return np.maximum(out, 0.0)


def _randomized(x: np.ndarray, k: int):
    from sklearn.utils.extmath import randomized_svd

    u, s, vt = randomized_svd(x, k, random_state=0)
    return u, s, vt
