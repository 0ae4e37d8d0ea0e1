"""Perturbation-response metrics (docs/evaluation.md, "Perturbation"; scGen's protocol).

All gene-level quantities use the protocol's normalisation: counts scaled to 10,000 per cell, ``log1p``
(:func:`~exprflow.metrics.reference.normalise_rows`). For one cell type, with ``ctrl`` its real control
cells, ``stim`` its real perturbed cells and ``pred`` the predicted perturbed cells:

- ``mean_g(A)``: per-gene mean of the normalised values of cell set A.
- **DE genes** (:func:`de_genes`): Wilcoxon rank-sum z-score of ``stim`` vs ``ctrl`` per gene (normal
  approximation, ties given their average rank, no tie correction of the variance: scanpy's
  ``rank_genes_groups(method="wilcoxon")`` default), genes sorted by z-score, the top ``n`` up-regulated
  in ``stim`` (``direction="up"``, scGen's choice: the names scanpy ranks first for the stimulated group)
  or by ``|z|`` (``direction="both"``).
- **R^2 of means** (:func:`r2_of_means`): the squared Pearson correlation between ``mean_g(pred)`` and
  ``mean_g(stim)`` over a gene set (all genes, or the top-100 DE genes). This is scGen's number
  (``scipy.stats.linregress(...).rvalue ** 2``): it ignores a constant offset and a common scale. The
  coefficient of determination around the identity line, ``1 - SS_res / SS_tot`` (which does not), is
  reported beside it as ``r2_identity_*``.
- **LFC Pearson** (:func:`lfc_pearson`): Pearson correlation between the predicted log-fold-changes
  ``mean_g(pred) - mean_g(ctrl)`` and the real ones ``mean_g(stim) - mean_g(ctrl)`` (differences of mean
  log1p values), over all genes and over the top-100 DE genes. Undefined (``None`` with a reason) when
  either vector is constant, e.g. the identity baseline, whose predicted LFC is 0 for every gene.
- **energy ratio to floor** (:func:`energy_to_floor`): in the protocol's reference space (30-PC PCA
  fitted on the model's training cells), ``energy(pred, stim_A) / energy(stim_B, stim_A)`` where the
  real perturbed cells are split at random into halves A and B and ``pred`` is subsampled to ``|A|``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata

from exprflow.errors import ExprflowInputError
from exprflow.metrics.distances import energy
from exprflow.metrics.reference import N_COMPONENTS, ReferenceSpace, normalise_rows

DE_DIRECTIONS = ("up", "both")


def _dense_normalised(x) -> np.ndarray:
    norm = normalise_rows(x)
    return norm.toarray() if sp.issparse(norm) else norm


def mean_expression(x) -> np.ndarray:
    """Per-gene mean of ``log1p(counts / library * 1e4)`` over the cells (rows) of ``x``."""
    return np.asarray(normalise_rows(x).mean(axis=0), dtype=np.float64).ravel()


def wilcoxon_z(stim, ctrl) -> np.ndarray:
    """Per-gene rank-sum z-score of ``stim`` vs ``ctrl`` (positive: higher in ``stim``); see module docstring."""
    a, b = _dense_normalised(stim), _dense_normalised(ctrl)
    n1, n2 = a.shape[0], b.shape[0]
    if n1 < 2 or n2 < 2:
        raise ExprflowInputError(f"DE genes need at least 2 cells per group, got {n1} perturbed and {n2} control.")
    ranks = rankdata(np.vstack([a, b]), axis=0)  # average ranks for ties
    rank_sum = ranks[:n1].sum(axis=0)
    n = n1 + n2
    return (rank_sum - n1 * (n + 1) / 2.0) / np.sqrt(n1 * n2 * (n + 1) / 12.0)


def de_genes(stim, ctrl, n_top: int = 100, direction: str = "up") -> np.ndarray:
    """Column indices of the top ``n_top`` DE genes of ``stim`` vs ``ctrl`` (best first; stable ties)."""
    if direction not in DE_DIRECTIONS:
        raise ExprflowInputError(f"direction must be one of {DE_DIRECTIONS}, got {direction!r}.")
    z = wilcoxon_z(stim, ctrl)
    score = z if direction == "up" else np.abs(z)
    return np.argsort(-score, kind="stable")[: min(int(n_top), z.size)]


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def r2_of_means(pred_mean: np.ndarray, real_mean: np.ndarray) -> float | None:
    """scGen's R^2: squared Pearson correlation of per-gene means (None when one vector is constant)."""
    r = _pearson(np.asarray(pred_mean, float), np.asarray(real_mean, float))
    return None if r is None else r * r


def r2_identity(pred_mean: np.ndarray, real_mean: np.ndarray) -> float | None:
    """``1 - sum (real - pred)^2 / sum (real - mean(real))^2`` (None when ``real`` is constant)."""
    real, pred = np.asarray(real_mean, float), np.asarray(pred_mean, float)
    ss_tot = np.sum((real - real.mean()) ** 2)
    return None if ss_tot == 0 else float(1.0 - np.sum((real - pred) ** 2) / ss_tot)


def lfc_pearson(pred_mean: np.ndarray, real_mean: np.ndarray, ctrl_mean: np.ndarray) -> float | None:
    """Pearson correlation of predicted vs real log-fold-changes against ``ctrl_mean`` (None if constant)."""
    return _pearson(np.asarray(pred_mean) - ctrl_mean, np.asarray(real_mean) - ctrl_mean)


def energy_to_floor(pred, stim, train, seed: int = 0) -> dict:
    """Energy distance of ``pred`` to half the real perturbed cells, and the same for the other half (floor).

    ``train``: the cells the model was trained on (the PCA of the reference space is fitted on them), or
    a :class:`ReferenceSpace` already fitted on them (to score several predictions in one space).
    Returns ``{"energy", "energy_floor", "energy_ratio", "n_compared"}``.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(stim.shape[0])
    half = stim.shape[0] // 2
    if half < 5 or pred.shape[0] < half:
        raise ExprflowInputError(f"energy_to_floor needs >= 10 real perturbed cells and >= {half} predicted ones.")
    a, b = order[:half], order[half : 2 * half]
    space = train if isinstance(train, ReferenceSpace) else ReferenceSpace(N_COMPONENTS).fit(train)
    z_a, z_b = space.transform(stim[np.sort(a)]), space.transform(stim[np.sort(b)])
    z_pred = space.transform(pred[np.sort(rng.choice(pred.shape[0], size=half, replace=False))])
    e_model, e_floor = float(energy(z_pred, z_a)), float(energy(z_b, z_a))
    return {"energy": e_model, "energy_floor": e_floor, "energy_ratio": e_model / e_floor if e_floor > 0 else None,
            "n_compared": int(half)}


def perturbation_metrics(pred, stim, ctrl, *, n_top: int = 100, direction: str = "up", train=None,
                         seed: int = 0) -> dict:
    """Every metric of the module docstring for one cell type (matrices of counts, same gene columns).

    Returns a JSON-serialisable dict: ``r2_mean_all``, ``r2_mean_top{n}``, ``r2_identity_all``,
    ``r2_identity_top{n}``, ``lfc_pearson_all``, ``lfc_pearson_top{n}``, ``de_genes`` (column indices),
    cell numbers and, with ``train`` (matrix or fitted ReferenceSpace), the energy entries of :func:`energy_to_floor`.
    """
    shapes = {x.shape[1] for x in (pred, stim, ctrl)}
    if len(shapes) != 1:
        raise ExprflowInputError(f"pred, stim and ctrl must have the same genes (columns), got {sorted(shapes)}.")
    m_pred, m_stim, m_ctrl = mean_expression(pred), mean_expression(stim), mean_expression(ctrl)
    top = de_genes(stim, ctrl, n_top, direction)
    tag = f"top{len(top)}"
    out = {
        "r2_mean_all": r2_of_means(m_pred, m_stim), f"r2_mean_{tag}": r2_of_means(m_pred[top], m_stim[top]),
        "r2_identity_all": r2_identity(m_pred, m_stim), f"r2_identity_{tag}": r2_identity(m_pred[top], m_stim[top]),
        "lfc_pearson_all": lfc_pearson(m_pred, m_stim, m_ctrl),
        f"lfc_pearson_{tag}": lfc_pearson(m_pred[top], m_stim[top], m_ctrl[top]),
        "de_genes": top.tolist(), "de_direction": direction,
        "n_pred": int(pred.shape[0]), "n_stim": int(stim.shape[0]), "n_ctrl": int(ctrl.shape[0]),
    }
    if train is not None:
        out.update(energy_to_floor(pred, stim, train, seed=seed))
    return out
