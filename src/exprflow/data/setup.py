"""``setup_anndata``: where the counts and the condition of an AnnData are, stored in the AnnData itself.

As scvi-tools does with its data manager, ``Model.setup_anndata(adata, ...)`` writes a small JSON-able
record to ``adata.uns["_exprflow_setup"]``, so copies, views and subsets of ``adata`` keep it::

    {"model": "LatentFlow", "kind": "AnnDataSetup", "layer": "counts", "condition_key": "cell_type"}

(fields left at ``None`` are omitted, so the record can be written to ``.h5ad``). ``setup_anndata`` is
the ONE place where exprflow writes to the user's AnnData; every other function leaves it untouched.
A model built or used on data set up differently from the model (another layer or condition key)
refuses with a message naming both settings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
from anndata import AnnData

from exprflow.errors import ExprflowInputError

#: the ``uns`` key that holds the setup record
SETUP_KEY = "_exprflow_setup"


@dataclass(frozen=True)
class AnnDataSetup:
    """Which layer holds the values and which obs column holds the condition."""

    layer: str | None = None
    condition_key: str | list[str] | None = None  # a list: several keys (label combinations)


def _describe(values: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items())


def write_setup(adata: AnnData, setup, model: str) -> None:
    """Store ``setup`` (a setup dataclass) in ``adata.uns["_exprflow_setup"]``; refuses a view."""
    if adata.is_view:
        raise ExprflowInputError(
            "setup_anndata was given a view of an AnnData (a subset such as adata[mask]); it stores the setup in "
            "adata.uns, which a view cannot hold. Call it on a copy: sub = adata[mask].copy().")
    record = {"model": model, "kind": type(setup).__name__}
    record.update({k: v for k, v in asdict(setup).items() if v is not None})
    adata.uns[SETUP_KEY] = record


def stored_setup(adata: AnnData) -> dict | None:
    """The setup record of ``adata`` (``None`` when ``setup_anndata`` was never called on it or its parent)."""
    record = adata.uns.get(SETUP_KEY) if adata.uns is not None else None
    if record is None:
        return None
    # several condition keys are a list, which an .h5ad round trip turns into an array
    return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in record.items()}


def view_anndata_setup(adata: AnnData) -> str:
    """A readable summary of how ``adata`` was set up (what ``setup_anndata`` stored in ``uns``).

    Parameters
    ----------
    adata
        Any AnnData (a copy, view or subset of one that was set up keeps the setup).

    Returns
    -------
    str
        One line per setting, or a sentence saying that ``adata`` was not set up. It is also logged.
    """
    record = stored_setup(adata)
    if record is None:
        return (f"This AnnData ({adata.n_obs} cells x {adata.n_vars} genes) was not set up: call "
                "Model.setup_anndata(adata, layer=..., condition_key=...) or pass those keywords to the model.")
    model = record.pop("model", "?")
    record.pop("kind", None)
    lines = [f"exprflow setup of {adata.n_obs} cells x {adata.n_vars} genes (by {model}.setup_anndata):"]
    lines.append(f"  counts: {'layers[' + repr(record.pop('layer')) + ']' if 'layer' in record else 'X'}")
    lines += [f"  {k}: {v!r}" for k, v in record.items()]
    return "\n".join(lines)


def resolve_setup(adata: AnnData, setup_cls: type, model: str, **given):
    """The setup a model uses on ``adata``: the stored record, completed by the keywords given.

    A keyword that contradicts the stored record (``layer="counts"`` on data set up with ``layer=None``)
    is an error, never silently preferred; a record written for another kind of model (e.g. a time
    course) is used only when no keyword says otherwise.
    """
    given = {k: v for k, v in given.items() if v is not None}
    record = stored_setup(adata)
    names = [f.name for f in fields(setup_cls)]
    if record is None:
        return setup_cls(**given)
    if record.get("kind") != setup_cls.__name__:
        if given:
            return setup_cls(**given)
        raise ExprflowInputError(
            f"This AnnData was set up by {record.get('model')}.setup_anndata, which {model} cannot use; call "
            f"{model}.setup_anndata(adata, ...) or pass its keywords ({', '.join(names)}) to {model}(...).")
    stored = {name: record.get(name) for name in names}
    conflicts = {k: v for k, v in given.items() if stored.get(k) is not None and stored[k] != v}
    if conflicts:
        was = {k: stored[k] for k in conflicts}
        raise ExprflowInputError(
            f"This AnnData was set up with {_describe(was)} (by {record.get('model')}.setup_anndata), but "
            f"{model}(...) was given {_describe(conflicts)}. Call {model}.setup_anndata(adata, ...) again with "
            "the settings you want, or leave those keywords out.")
    return setup_cls(**{**stored, **given})


def check_same_setup(setup, adata: AnnData, model: str) -> None:
    """Refuse ``adata`` when it was set up differently from the trained model's ``setup``.

    Data with no setup record are read as the model was trained (scvi-tools' transfer of a setup).
    """
    record = stored_setup(adata)
    if record is None or record.get("kind") != type(setup).__name__:
        return
    mine = asdict(setup)
    theirs = {name: record.get(name) for name in mine}
    if theirs != mine:
        diff = [k for k in mine if mine[k] != theirs[k]]
        raise ExprflowInputError(
            f"This AnnData was set up with {_describe({k: theirs[k] for k in diff})}, but the model was trained "
            f"with {_describe({k: mine[k] for k in diff})}. Call {model}.setup_anndata(adata, "
            f"{_describe(mine)}) on data laid out as in training (or pass layer= to read another layer).")


def read_layer(setup, adata: AnnData, model: str, layer: str | None = None) -> str | None:
    """The layer to read counts from in ``adata``: ``layer`` when given (``"X"``: ``adata.X``), else the
    model's own (after :func:`check_same_setup`); ``None`` means ``adata.X``."""
    if layer == "X" and "X" not in adata.layers:
        return None
    if layer is not None:
        if layer not in adata.layers:
            raise ExprflowInputError(f"layer={layer!r} is not in adata.layers; available: "
                                     f"{', '.join(adata.layers) or 'none (counts in X: leave layer unset)'}.")
        return layer
    check_same_setup(setup, adata, model)
    if setup.layer is not None and setup.layer not in adata.layers:
        raise ExprflowInputError(
            f"The model reads counts from layer {setup.layer!r}, which this AnnData lacks (layers: "
            f"{', '.join(adata.layers) or 'none'}). Pass layer='X' if its counts are in X, or the name of its "
            "counts layer.")
    return setup.layer


def prepare_training_counts(adata: AnnData, setup: AnnDataSetup):
    """Validated training data: in memory (:class:`~exprflow.data.CountData`) for an in-memory AnnData,
    on disk (:class:`~exprflow.data.backed.BackedCounts`, out-of-core training) for a backed one."""
    from exprflow.data import prepare_counts
    from exprflow.data.backed import is_backed, prepare_backed_counts

    prepare = prepare_backed_counts if is_backed(adata) else prepare_counts
    single_key = None if isinstance(setup.condition_key, list) else setup.condition_key  # several: models/conditions.py
    return prepare(adata, layer=setup.layer, condition_key=single_key, require_counts=True)
