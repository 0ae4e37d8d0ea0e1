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

Field metrics (:func:`field_metrics`), with the definitions of Arc Institute's ``cell-eval`` (0.8) on the
same log1p-normalised values (checked against the package itself: BENCHMARKS.md):

- **pearson_delta** (all genes; and on the top-``n`` DE genes above): the LFC Pearson above, i.e.
  Pearson of ``mean(pred) - mean(ctrl)`` vs ``mean(stim) - mean(ctrl)``.
- **DE tables** (:func:`de_table`, ``pdex`` as ``cell-eval`` calls it): per gene, the two-sided
  Mann-Whitney U test of a group vs the control cells (normal approximation with tie correction and
  continuity correction), Benjamini-Hochberg FDR over all genes, and ``log2FC = log2(expm1(mean(a)) /
  expm1(mean(b)))`` of the geometric-mean pseudobulks (0/0 gives 0).
- **de_overlap_at_k** (:func:`de_overlap`): significant genes (FDR < 0.05) of real and of predicted cells,
  each sorted by ``|log2FC|`` (descending, ties in gene order); ``|top_k(real) & top_k(pred)| / k`` with
  ``k = min(k, number of real significant genes)`` (``k=None``: all of them, ``overlap_at_N``).
- **de_direction_agreement** (:func:`de_direction_agreement`): over the real significant genes, the
  fraction whose predicted ``log2FC`` has the same sign.
- **discrimination_score** (:func:`discrimination_score`): for each predicted response ``pred_p - ctrl``,
  the L1 distances to every real response ``stim_q - ctrl``; ``1 - rank(q = p) / n`` (1: the closest
  is the right one).
- **mae**: mean absolute error between ``mean(pred)`` and ``mean(stim)`` over the genes.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.stats import false_discovery_control, mannwhitneyu, rankdata

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


FDR_THRESHOLD = 0.05


def de_table(group, ref) -> dict:
    """``{"log2fc", "fdr"}`` per gene of ``group`` vs ``ref`` cells (counts; module docstring, ``pdex``)."""
    a, b = _dense_normalised(group), _dense_normalised(ref)
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ExprflowInputError(f"DE tests need at least 2 cells per group, got {a.shape[0]} and {b.shape[0]}.")
    with np.errstate(divide="ignore", invalid="ignore"):
        lfc = np.log2(np.expm1(a.mean(0)) / np.expm1(b.mean(0)))
        p = mannwhitneyu(a, b, axis=0, method="asymptotic", use_continuity=True, alternative="two-sided").pvalue
    lfc[np.isnan(lfc)] = 0.0
    p = np.where(np.isnan(p), 1.0, np.clip(p, 0.0, 1.0))  # a gene constant in both groups: no evidence
    return {"log2fc": lfc, "fdr": false_discovery_control(p)}


def _top_significant(de: dict, fdr: float) -> np.ndarray:
    sig = np.flatnonzero(de["fdr"] < fdr)
    return sig[np.argsort(-np.abs(de["log2fc"][sig]), kind="stable")]


def de_overlap(real_de: dict, pred_de: dict, k: int | None = None, fdr: float = FDR_THRESHOLD) -> float:
    """``cell-eval``'s ``overlap_at_k``: shared genes among the top-``k`` significant genes (module docstring)."""
    real, pred = _top_significant(real_de, fdr), _top_significant(pred_de, fdr)
    k_eff = real.size if not k else min(int(k), real.size)
    if k_eff == 0 or pred.size == 0:
        return 0.0
    return float(np.intersect1d(real[:k_eff], pred[:k_eff]).size / k_eff)


def de_direction_agreement(real_de: dict, pred_de: dict, fdr: float = FDR_THRESHOLD) -> float | None:
    """Fraction of the real significant genes whose predicted log2FC has the same sign (None: none significant)."""
    sig = np.flatnonzero(real_de["fdr"] < fdr)
    if sig.size == 0:
        return None
    return float(np.mean(np.sign(real_de["log2fc"][sig]) == np.sign(pred_de["log2fc"][sig])))


def discrimination_score(pred_effects: np.ndarray, real_effects: np.ndarray) -> np.ndarray:
    """Per row ``p``: ``1 - rank / n`` of the real response ``p`` among all real responses by L1 distance
    to the predicted response ``p`` (rows: perturbations or held-out cell types, columns: genes)."""
    pred, real = np.asarray(pred_effects, float), np.asarray(real_effects, float)
    if pred.shape != real.shape or pred.ndim != 2:
        raise ExprflowInputError(f"pred_effects and real_effects must be the same 2-D shape, got {pred.shape}, "
                                 f"{real.shape}.")
    n = real.shape[0]
    scores = np.empty(n)
    for p in range(n):
        order = np.argsort(np.abs(real - pred[p]).sum(1))  # numpy's default sort, as cell-eval
        scores[p] = 1.0 - np.flatnonzero(order == p)[0] / n
    return scores


def field_metrics(pred, stim, ctrl, *, n_top: int = 100, direction: str = "up", de_k: int = 100) -> dict:
    """The field's metrics for one perturbation (matrices of counts, same gene columns; module docstring).

    Returns ``pearson_delta_all``, ``pearson_delta_top{n}`` (on :func:`de_genes`), ``r2_mean_top{n}``,
    ``mae``, ``de_overlap_at_N``, ``de_overlap_at_{de_k}``, ``de_direction_agreement``, the numbers of
    significant genes ``n_de_real`` / ``n_de_pred``, and ``effect`` (``mean(pred) - mean(ctrl)``, for
    :func:`discrimination_score` across perturbations).
    """
    m_pred, m_stim, m_ctrl = mean_expression(pred), mean_expression(stim), mean_expression(ctrl)
    top = de_genes(stim, ctrl, n_top, direction)
    real_de, pred_de = de_table(stim, ctrl), de_table(pred, ctrl)
    tag = f"top{len(top)}"
    return {
        "pearson_delta_all": lfc_pearson(m_pred, m_stim, m_ctrl),
        f"pearson_delta_{tag}": lfc_pearson(m_pred[top], m_stim[top], m_ctrl[top]),
        f"r2_mean_{tag}": r2_of_means(m_pred[top], m_stim[top]),
        "mae": float(np.mean(np.abs(m_pred - m_stim))),
        "de_overlap_at_N": de_overlap(real_de, pred_de, None), f"de_overlap_at_{de_k}": de_overlap(real_de, pred_de, de_k),
        "de_direction_agreement": de_direction_agreement(real_de, pred_de),
        "n_de_real": int(np.sum(real_de["fdr"] < FDR_THRESHOLD)), "n_de_pred": int(np.sum(pred_de["fdr"] < FDR_THRESHOLD)),
        "effect": m_pred - m_ctrl,
    }


def cell_eval_anndata(cells: dict, var_names, pert_col: str = "target"):
    """One AnnData in the layout ``cell-eval`` reads: log1p-normalised values in X, ``obs[pert_col]``.

    ``cells`` maps a label (the control label and each perturbation) to a count matrix; write one for
    the real cells and one for the predicted cells (with the same real control cells in both), then
    ``MetricsEvaluator(adata_pred, adata_real, pert_col=..., control_pert=...)``.
    """
    import anndata as ad
    import pandas as pd

    blocks = [sp.csr_matrix(normalise_rows(sp.csr_matrix(x)), dtype=np.float32) for x in cells.values()]
    labels = np.concatenate([[str(k)] * b.shape[0] for k, b in zip(cells, blocks)])
    obs = pd.DataFrame({pert_col: pd.Categorical(labels)}, index=[f"cell_{i}" for i in range(labels.size)])
    return ad.AnnData(X=sp.vstack(blocks).tocsr(), obs=obs, var=pd.DataFrame(index=[str(v) for v in var_names]))
