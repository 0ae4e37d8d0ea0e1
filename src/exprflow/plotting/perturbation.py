"""Predicted vs real log-fold-changes of a perturbation, one panel per method (PNG, written atomically)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from exprflow.errors import ExprflowInputError
from exprflow.plotting.figures import _save, plt


def plot_lfc(real_lfc, predicted: dict, path: str | os.PathLike, genes=None, groups=None,
             title: str = "predicted vs real log-fold-change") -> Path:
    """Scatter of predicted against real log-fold-changes (e.g. ``mean(log1p stim) - mean(log1p ctrl)``,
    :func:`~exprflow.metrics.perturbation.mean_expression`), one panel per method of ``predicted``
    (name -> vector like ``real_lfc``), with the identity line and the Pearson correlation (pearson_delta).

    ``genes``: indices to show (e.g. the top-100 DE genes); ``groups``: a label per shown point (e.g. the
    held-out cell type when several are pooled), drawn in different colours.
    """
    real = np.asarray(real_lfc, dtype=float)
    idx = np.arange(real.size) if genes is None else np.asarray(genes)
    labels = np.zeros(idx.size, dtype=str) if groups is None else np.asarray(groups, dtype=str)
    if labels.size != idx.size or not predicted:
        raise ExprflowInputError("plot_lfc needs at least one prediction and one group label per shown gene.")
    fig, axes = plt.subplots(1, len(predicted), figsize=(2.6 * len(predicted), 2.9), sharex=True, sharey=True,
                             squeeze=False)
    for ax, (name, lfc) in zip(axes[0], predicted.items()):
        pred = np.asarray(lfc, dtype=float)
        if pred.shape != real.shape:
            raise ExprflowInputError(f"{name}: {pred.shape[0]} values, the real LFC has {real.shape[0]}.")
        for label in np.unique(labels):
            rows = idx[labels == label]
            ax.scatter(real[rows], pred[rows], s=4, alpha=0.6, label=label or None)
        x, y = real[idx], pred[idx]
        r = np.corrcoef(x, y)[0, 1] if np.ptp(x) > 0 and np.ptp(y) > 0 else None
        ax.axline((0, 0), slope=1, color="k", lw=0.7, ls="--")
        ax.set_title(f"{name}\n" + (f"r = {r:.3f}" if r is not None else "r undefined"), fontsize=8)
        ax.set_xlabel("real LFC", fontsize=8)
    axes[0][0].set_ylabel("predicted LFC", fontsize=8)
    if groups is not None:
        axes[0][-1].legend(fontsize=5, loc="lower right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
