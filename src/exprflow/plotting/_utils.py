"""What every exprflow figure shares: the axes to draw on, and saving a PNG atomically."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from anndata import AnnData

from exprflow.errors import ExprflowInputError


def new_figure(n_panels: int, width: float = 5.0, height: float = 4.4):
    """A figure with ``n_panels`` axes in one row."""
    fig, axes = plt.subplots(1, n_panels, figsize=(width * n_panels, height), squeeze=False)
    return fig, list(axes[0])


def finish(fig, save: str | os.PathLike | None, show: bool | None):
    """Write ``fig`` to ``save`` (PNG, atomically) and close it, or show it; returns the figure."""
    if save is not None:
        path = Path(save)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{path.suffix or '.png'}")
        fig.savefig(tmp, dpi=130, bbox_inches="tight")
        os.replace(tmp, path)
    if show:
        plt.show()
    if save is not None or show:
        plt.close(fig)
    return fig


def counts_matrix(adata: AnnData, layer: str | None):
    """``adata.X`` or ``adata.layers[layer]``, with a clear error for a missing layer."""
    if layer is None or layer == "X":
        return adata.X
    if layer not in adata.layers:
        raise ExprflowInputError(f"layer={layer!r} is not in adata.layers; available: "
                                 f"{', '.join(adata.layers) or 'none (leave layer unset to read X)'}.")
    return adata.layers[layer]


def labels_of(adata: AnnData, key: str | None, what: str) -> np.ndarray | None:
    """``adata.obs[key]`` as strings (None without a key); a clear error when the column is missing."""
    if key is None:
        return None
    if key not in adata.obs.columns:
        raise ExprflowInputError(f"The {what} cells have no obs column {key!r}; available: "
                                 f"{', '.join(map(str, adata.obs.columns)) or 'none'}.")
    return adata.obs[key].astype(str).to_numpy()


def colours(categories) -> dict:
    """One colour per category (tab10 / tab20)."""
    cmap = plt.get_cmap("tab10" if len(categories) <= 10 else "tab20")
    return {c: cmap(i % cmap.N) for i, c in enumerate(categories)}
