"""Predicted vs real log-fold-changes of a perturbation, gene by gene."""

from __future__ import annotations

import os

import numpy as np
from anndata import AnnData

from exprflow.errors import ExprflowInputError
from exprflow.plotting._utils import counts_matrix, finish, new_figure


def fold_changes(control: AnnData, predicted: AnnData, real: AnnData, *, layer: str | None = None,
                 n_label: int = 10, save: str | os.PathLike | None = None, show: bool | None = None):
    """Scatter of predicted vs real log-fold-changes over control, one point per gene.

    Fold changes are differences of per-gene means of ``log1p(counts / library * 1e4)`` (as in the
    perturbation metrics); the title gives their Pearson correlation, the diagonal is a perfect
    prediction, and the ``n_label`` genes with the largest real change are named.

    Parameters
    ----------
    control
        Real control cells.
    predicted
        Predicted perturbed cells (counts in ``X``; e.g. ``PerturbationFlow.predict``).
    real
        Real perturbed cells.
    layer
        Layer of ``control`` and ``real`` holding counts (``None``: ``X``).
    n_label
        Genes named on the plot.
    save, show
        As in :func:`~exprflow.plotting.real_vs_generated`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from exprflow.metrics.perturbation import lfc_pearson, mean_expression

    genes = list(map(str, control.var_names))
    for name, adata in (("predicted", predicted), ("real", real)):
        if list(map(str, adata.var_names)) != genes:
            raise ExprflowInputError(f"The {name} cells do not have the control cells' genes in the same order.")
    ctrl = mean_expression(counts_matrix(control, layer))
    pred, obs = mean_expression(predicted.X), mean_expression(counts_matrix(real, layer))
    lfc_pred, lfc_real = pred - ctrl, obs - ctrl
    r = lfc_pearson(pred, obs, ctrl)
    fig, (ax,) = new_figure(1, width=4.8, height=4.6)
    ax.scatter(lfc_real, lfc_pred, s=5, c="tab:blue", alpha=0.6, rasterized=True)
    lim = float(np.nanmax(np.abs(np.concatenate([lfc_real, lfc_pred])))) * 1.05 or 1.0
    ax.plot([-lim, lim], [-lim, lim], color="0.4", lw=0.8, ls="--", label="perfect prediction")
    for g in np.argsort(-np.abs(lfc_real))[:n_label]:
        ax.annotate(genes[g], (lfc_real[g], lfc_pred[g]), fontsize=6)
    ax.set_xlabel("real log-fold-change")
    ax.set_ylabel("predicted log-fold-change")
    ax.set_title("fold changes" + ("" if r is None else f": Pearson r = {r:.3f}"))
    ax.legend(frameon=False, fontsize=7)
    return finish(fig, save, show)


def fold_change_panels(real_lfc, predicted: dict, *, genes=None, groups=None,
                       title: str = "predicted vs real log-fold-change", save: str | os.PathLike | None = None,
                       show: bool | None = None):
    """Predicted against real log-fold-changes, one panel per method, with the identity line and the
    Pearson correlation of each (cell-eval's ``pearson_delta``).

    Parameters
    ----------
    real_lfc
        Real log-fold-changes per gene, e.g. ``mean(log1p stim) - mean(log1p ctrl)``
        (:func:`~exprflow.metrics.perturbation.mean_expression`).
    predicted
        Method name -> vector like ``real_lfc``.
    genes
        Indices of the genes to show (e.g. the top-100 DE genes); default all.
    groups
        A label per shown point (e.g. the held-out cell type when several are pooled), one colour each.
    title, save, show
        Figure title; as in :func:`~exprflow.plotting.real_vs_generated`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    real = np.asarray(real_lfc, dtype=float)
    idx = np.arange(real.size) if genes is None else np.asarray(genes)
    labels = np.zeros(idx.size, dtype=str) if groups is None else np.asarray(groups, dtype=str)
    if labels.size != idx.size or not predicted:
        raise ExprflowInputError("fold_change_panels needs at least one prediction in predicted= and one groups= "
                                 "label per shown gene.")
    fig, axes = new_figure(len(predicted), width=2.6, height=2.9)
    for ax, (name, lfc) in zip(axes, predicted.items()):
        pred = np.asarray(lfc, dtype=float)
        if pred.shape != real.shape:
            raise ExprflowInputError(f"predicted[{name!r}] has {pred.shape[0]} values; real_lfc has {real.shape[0]}.")
        for label in np.unique(labels):
            rows = idx[labels == label]
            ax.scatter(real[rows], pred[rows], s=4, alpha=0.6, label=label or None)
        x, y = real[idx], pred[idx]
        r = np.corrcoef(x, y)[0, 1] if np.ptp(x) > 0 and np.ptp(y) > 0 else None
        ax.axline((0, 0), slope=1, color="k", lw=0.7, ls="--")
        ax.set_title(f"{name}\n" + (f"r = {r:.3f}" if r is not None else "r undefined"), fontsize=8)
        ax.set_xlabel("real LFC", fontsize=8)
    axes[0].set_ylabel("predicted LFC", fontsize=8)
    if groups is not None:
        axes[-1].legend(fontsize=5, loc="lower right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return finish(fig, save, show)
