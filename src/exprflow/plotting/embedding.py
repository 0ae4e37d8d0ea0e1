"""Real vs generated cells in one embedding (UMAP or PCA of the evaluation protocol's reference space)."""

from __future__ import annotations

import os

import numpy as np
from anndata import AnnData

from exprflow.errors import ExprflowInputError
from exprflow.plotting._utils import colours, counts_matrix, finish, labels_of, new_figure

BASES = ("umap", "pca")


def real_vs_generated(
    real: AnnData,
    generated: AnnData,
    *,
    reference: AnnData | None = None,
    condition_key: str | None = None,
    basis: str = "umap",
    layer: str | None = None,
    counts: bool = True,
    seed: int = 0,
    save: str | os.PathLike | None = None,
    show: bool | None = None,
):
    """Real and generated cells in one embedding, coloured by source (and by condition).

    The cells are normalised and projected as in the evaluation protocol (docs/evaluation.md): a
    30-component PCA fitted on ``reference`` (default: ``real``). ``basis="umap"`` fits one UMAP on real
    and generated cells together; ``"pca"`` shows the first two components.

    Parameters
    ----------
    real
        Real cells (e.g. the held-out test split); counts in ``X`` or ``layers[layer]``.
    generated
        Generated cells (counts in ``X``), the same genes as ``real``.
    reference
        Cells the PCA is fitted on (e.g. the training split; default: ``real``).
    condition_key
        ``obs`` column of both: adds a panel per source coloured by condition.
    basis
        ``"umap"`` or ``"pca"``.
    layer
        Layer of ``real`` and ``reference`` holding counts (``None``: ``X``).
    counts
        ``False`` for values that are not counts (``log1p`` only).
    seed
        Seeds the UMAP.
    save
        Write the figure to this PNG path (and close it).
    show
        Show the figure (interactive sessions).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from exprflow.metrics import ReferenceSpace

    if basis not in BASES:
        raise ExprflowInputError(f"basis must be one of {BASES}, got {basis!r}.")
    if list(map(str, real.var_names)) != list(map(str, generated.var_names)):
        if set(map(str, real.var_names)) != set(map(str, generated.var_names)):
            raise ExprflowInputError("real and generated cells have different genes; subset both to the same genes.")
        generated = generated[:, real.var_names]
    labels_real = labels_of(real, condition_key, "real")
    labels_gen = labels_of(generated, condition_key, "generated")
    ref = real if reference is None else reference
    space = ReferenceSpace(n_components=min(30, real.n_vars - 1, ref.n_obs - 1), counts=counts)
    space.fit(counts_matrix(ref, layer))
    pcs = np.vstack([space.transform(counts_matrix(real, layer)), space.transform(generated.X)])
    if basis == "umap":
        import umap

        emb = umap.UMAP(n_neighbors=15, min_dist=0.3, random_state=seed).fit_transform(pcs)
    else:
        emb = pcs[:, :2]
    n = real.n_obs
    fig, axes = new_figure(3 if condition_key else 1)
    axes[0].scatter(emb[:n, 0], emb[:n, 1], s=4, c="0.55", label="real", rasterized=True)
    axes[0].scatter(emb[n:, 0], emb[n:, 1], s=4, c="tab:red", alpha=0.6, label="generated", rasterized=True)
    axes[0].set_title("real vs generated")
    axes[0].legend(markerscale=3, frameon=False)
    if condition_key:
        cats = sorted(set(labels_real) | set(labels_gen))
        colour = colours(cats)
        for ax, rows, labs, name in ((axes[1], slice(0, n), labels_real, "real"),
                                     (axes[2], slice(n, None), labels_gen, "generated")):
            ax.scatter(emb[:, 0], emb[:, 1], s=2, c="0.9", rasterized=True)
            pts = emb[rows]
            for c in cats:
                m = labs == c
                ax.scatter(pts[m, 0], pts[m, 1], s=4, color=colour[c], label=c, rasterized=True)
            ax.set_title(f"{name}, by {condition_key}")
        axes[2].legend(markerscale=3, frameon=False, fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    label = "UMAP" if basis == "umap" else "PC"
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"{label}1")
        ax.set_ylabel(f"{label}2")
    return finish(fig, save, show)
