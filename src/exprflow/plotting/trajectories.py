"""Generated trajectories drawn over the real cells in the protocol's reference PCA (first two PCs)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from anndata import AnnData

from exprflow.plotting.figures import _save, plt


def plot_trajectories(real: AnnData, generated: AnnData, path: str | os.PathLike, *, time_key: str,
                      counts: bool = True, n_show: int = 40, title: str = "generated trajectories") -> Path:
    """Two panels on PC1/PC2 of the real cells (normalised as in docs/evaluation.md, PCA fitted on ``real``).

    Left: real cells coloured by ``obs[time_key]``. Right: the real cells in grey and ``n_show`` generated
    trajectories (``obs["trajectory"]``) as lines through their steps, points coloured by time.
    """
    from exprflow.data.timecourse import time_values
    from exprflow.metrics import ReferenceSpace

    space = ReferenceSpace(2, counts=counts).fit(real.X)
    z_real, z_gen = space.transform(real.X), space.transform(generated.X)
    t_real = time_values(real, time_key)[0]
    t_gen = np.asarray(generated.obs[time_key], dtype=float)
    lo, hi = min(t_real.min(), t_gen.min()), max(t_real.max(), t_gen.max())
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharex=True, sharey=True)
    sc = axes[0].scatter(z_real[:, 0], z_real[:, 1], c=t_real, cmap="viridis", vmin=lo, vmax=hi, s=6)
    axes[0].set_title(f"real cells by {time_key}")
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
    return _save(fig, path)
