"""Small datasets bundled with exprflow (read through ``importlib.resources``).

- ``pbmc3k``: 2,638 PBMCs x 2,000 highly variable genes, raw integer counts (CSR) with
  ``obs['cell_type']`` (9 annotated types).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import anndata as ad

from exprflow.errors import ExprflowInputError

_FILES = {"pbmc3k": "pbmc3k_counts.h5ad"}


def available() -> list[str]:
    """Names of the bundled datasets."""
    return sorted(_FILES)


def bundled_path(name: str) -> Path:
    """Filesystem path of a bundled dataset (e.g. ``bundled_path("pbmc3k")``)."""
    if name not in _FILES:
        raise ExprflowInputError(
            f"No bundled dataset named {name!r}. Available: {available()}; for your own data pass a path "
            "to an .h5ad file instead."
        )
    resource = resources.files(__name__).joinpath(_FILES[name])
    path = Path(str(resource))
    if not path.is_file():
        raise ExprflowInputError(
            f"The bundled file for {name!r} is missing at {path}. Reinstall exprflow "
            "(pip install --force-reinstall exprflow) so that its package data is present."
        )
    return path


def pbmc3k() -> ad.AnnData:
    """The bundled PBMC 3k counts as an in-memory AnnData (2,638 cells x 2,000 genes, ``obs['cell_type']``)."""
    return ad.read_h5ad(bundled_path("pbmc3k"))


__all__ = ["available", "bundled_path", "pbmc3k"]
