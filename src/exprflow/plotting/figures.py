"""Real-vs-generated UMAP and loss-curve figures (PNG, written atomically)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=130, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


_YLABELS = {"flow": "flow-matching loss (MSE)", "vae": "VAE loss (-ELBO per cell)"}


def _loss_panel(ax, history, ylabel: str, title: str) -> None:
    steps = np.array([h[0] for h in history], dtype=float)
    loss = np.array([h[1] for h in history], dtype=float)
    ax.plot(steps, loss, color="tab:blue", alpha=0.25, lw=0.8, label="per step")
    if loss.size >= 5:
        w = max(5, loss.size // 50)
        smooth = np.convolve(loss, np.ones(w) / w, mode="valid")
        ax.plot(steps[w - 1 :], smooth, color="tab:blue", lw=2, label=f"moving average ({w})")
    if loss.size and loss.min() > 0 and loss.max() / loss.min() > 20:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(frameon=False)


def plot_loss_curve(history: list | dict, path: str | os.PathLike, title: str = "training loss") -> Path:
    """Per-step loss (faint) and its moving average (bold) against the training step.

    ``history`` is a list of ``(step, loss, ...)`` or, for models trained in phases, a dict
    phase -> such a list (one panel per phase, e.g. ``{"vae": ..., "flow": ...}``).
    """
    phases = history if isinstance(history, dict) else {"flow": history}
    fig, axes = plt.subplots(1, len(phases), figsize=(5.5 * len(phases), 3.5), squeeze=False)
    for ax, (name, hist) in zip(axes[0], phases.items()):
        _loss_panel(ax, hist, _YLABELS.get(name, "loss"), title if len(phases) == 1 else f"{title}: {name}")
    return _save(fig, path)


def plot_real_vs_generated_umap(
    pcs_real: np.ndarray,
    pcs_generated: np.ndarray,
    path: str | os.PathLike,
    labels_real: np.ndarray | None = None,
    labels_generated: np.ndarray | None = None,
    seed: int = 0,
) -> Path:
    """One UMAP fitted on real and generated cells together (in the protocol's PCA space).

    Left: coloured by source; right (when labels are given): by condition, real and generated side
    by side with the same colours.
    """
    import umap

    emb = umap.UMAP(n_neighbors=15, min_dist=0.3, random_state=seed).fit_transform(np.vstack([pcs_real, pcs_generated]))
    n = len(pcs_real)
    panels = 3 if labels_real is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4.6), squeeze=False)
    ax = axes[0, 0]
    ax.scatter(emb[:n, 0], emb[:n, 1], s=4, c="0.55", label="real (test)", rasterized=True)
    ax.scatter(emb[n:, 0], emb[n:, 1], s=4, c="tab:red", alpha=0.6, label="generated", rasterized=True)
    ax.set_title("real vs generated")
    ax.legend(markerscale=3, frameon=False)
    if labels_real is not None:
        cats = sorted(set(map(str, labels_real)) | set(map(str, labels_generated)))
        cmap = plt.get_cmap("tab10" if len(cats) <= 10 else "tab20")
        colour = {c: cmap(i % cmap.N) for i, c in enumerate(cats)}
        for ax, sl, labs, name in ((axes[0, 1], slice(0, n), labels_real, "real"),
                                   (axes[0, 2], slice(n, None), labels_generated, "generated")):
            pts = emb[sl]
            ax.scatter(emb[:, 0], emb[:, 1], s=2, c="0.9", rasterized=True)
            for c in cats:
                m = np.asarray(labs).astype(str) == c
                ax.scatter(pts[m, 0], pts[m, 1], s=4, color=colour[c], label=c, rasterized=True)
            ax.set_title(f"{name}, by condition")
        axes[0, 2].legend(markerscale=3, frameon=False, fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, path)
