"""``setup_anndata`` without touching the user's AnnData.

scvi-tools writes its registry into ``adata.uns``; exprflow never modifies the user's object, so the
settings are remembered here, keyed by the object's identity (a weak reference keeps the entry from
outliving the AnnData).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from anndata import AnnData


@dataclass(frozen=True)
class AnnDataSetup:
    """Which layer holds the values and which obs column holds the condition."""

    layer: str | None = None
    condition_key: str | list[str] | None = None  # a list: several keys (label combinations)


_SETUPS: dict[int, tuple[weakref.ref, AnnDataSetup]] = {}


def remember_setup(adata: AnnData, setup: AnnDataSetup) -> None:
    """Record ``setup`` for this AnnData object (not a copy of it)."""
    key = id(adata)
    _SETUPS[key] = (weakref.ref(adata, lambda _ref, key=key: _SETUPS.pop(key, None)), setup)


def recall_setup(adata: AnnData) -> AnnDataSetup | None:
    """The setup recorded for this exact object, or None."""
    entry = _SETUPS.get(id(adata))
    if entry is None or entry[0]() is not adata:
        return None
    return entry[1]
