"""Generated trajectories drawn over the real cells in the protocol's reference PCA (first two PCs)."""

from __future__ import annotations

import os

import numpy as np
from anndata import AnnData

from exprflow.plotting._utils import counts_matrix, finish, new_figure


def trajectories(real: AnnData, generated: AnnData, *, time_key: str, weight_key: str | None = None,
                 layer: str | None = None, counts: bool = True, n_show: int = 40,
                 title: str = "generated trajectories", save: str | os.PathLike | None = None,
                 show: bool | None = None):
    """Two panels on PC1/PC2 of the real cells (normalised as in docs/evaluation.md, PCA fitted on them).

    Left: real cells coloured by ``obs[time_key]``; cells off the lineage (``obs[weight_key]`` of 0,
    or a missing time) are drawn in grey, not as time 0. Right: every real cell in grey and ``n_show``
    generated trajectories (``obs["trajectory"]``) as lines through their steps, points coloured by time.

    Parameters
    ----------
    real
        Real cells with ``obs[time_key]`` (counts in ``X`` or ``layers[layer]``).
    generated
        What :meth:`~exprflow.models.TrajectoryFlow.generate_trajectories` returned.
    time_key, weight_key
        The time column and (optionally) the lineage weight column of ``real``.
    layer
        Layer of ``real`` holding counts (``None``: ``X``).
    counts
        ``False`` for values that are not counts (``log1p`` only).
    n_show
        Trajectories drawn.
    title, save, show
        As in :func:`~exprflow.plotting.real_vs_generated`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import pandas as pd

    from exprflow.data.timecourse import time_values
    from exprflow.metrics import ReferenceSpace

    x_real = counts_matrix(real, layer)
    space = ReferenceSpace(2, counts=counts).fit(x_real)
    z_real, z_gen = space.transform(x_real), space.transform(generated.X)
    on = real.obs[time_key].notna().to_numpy()
    if weight_key is not None:
        on &= pd.to_numeric(real.obs[weight_key], errors="coerce").fillna(0).to_numpy() > 0
    t_real = time_values(real[on], time_key)[0]
    t_gen = np.asarray(generated.obs[time_key], dtype=float)
    lo, hi = min(t_real.min(), t_gen.min()), max(t_real.max(), t_gen.max())
    fig, axes = new_figure(2, width=5.5, height=4.6)
    axes[0].scatter(z_real[~on, 0], z_real[~on, 1], c="0.85", s=5, rasterized=True,
                    label=f"off the lineage ({int((~on).sum())})" if (~on).any() else None)
    sc = axes[0].scatter(z_real[on, 0], z_real[on, 1], c=t_real, cmap="viridis", vmin=lo, vmax=hi, s=6)
    axes[0].set_title(f"real cells by {time_key}")
    if (~on).any():
        axes[0].legend(frameon=False, fontsize=8)
    axes[1].scatter(z_real[:, 0], z_real[:, 1], c="0.85", s=5, rasterized=True)
    ids = np.asarray(generated.obs["trajectory"])
    for i in np.unique(ids)[:n_show]:
        rows = np.flatnonzero(ids == i)
        rows = rows[np.argsort(t_gen[rows], kind="stable")]
        axes[1].plot(z_gen[rows, 0], z_gen[rows, 1], color="0.3", lw=0.6, alpha=0.6)
        axes[1].scatter(z_gen[rows, 0], z_gen[rows, 1], c=t_gen[rows], cmap="viridis", vmin=lo, vmax=hi, s=12,
                        zorder=3)
    axes[1].set_title(f"{min(n_show, len(np.unique(ids)))} {title}")
    for ax in axes:
        ax.set_xlabel("PC1")
    axes[0].set_ylabel("PC2")
    fig.colorbar(sc, ax=axes, label=time_key, shrink=0.85)
    return finish(fig, save, show)
