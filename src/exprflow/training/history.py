"""Training history as tables: ``model.history`` maps each training phase to a pandas DataFrame.

::

    model.history["flow"]          # columns step, loss (flow-matching MSE per step)
    model.history["vae"]           # columns step, loss, recon, kl (count VAE: -ELBO per cell and its parts)
    model.history["flow"].plot(x="step", y="loss")

Phases are named as in training (``vae`` then ``flow``; one-phase models have ``flow`` only). In
``config.json`` each phase is stored column-wise (``{"step": [...], "loss": [...]}``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

#: columns of a phase's rows, in the order the training plans record them
COLUMNS: tuple[str, ...] = ("step", "loss", "recon", "kl")


def history_frame(rows: Sequence[Sequence[float]] | Mapping[str, Sequence[float]]) -> pd.DataFrame:
    """One phase's rows ``(step, loss, ...)`` (or columns) as a DataFrame with an integer ``step``."""
    if isinstance(rows, pd.DataFrame):
        return rows.copy()
    if isinstance(rows, Mapping):
        frame = pd.DataFrame({k: list(v) for k, v in rows.items()})
    else:
        rows = [tuple(r) for r in rows]
        width = len(rows[0]) if rows else 2
        frame = pd.DataFrame(rows, columns=list(COLUMNS[:width]))
    if "step" in frame:
        frame["step"] = frame["step"].astype("int64")
    return frame


def training_history(**phases) -> dict[str, pd.DataFrame]:
    """``{phase: DataFrame}`` from each phase's recorded rows (see :func:`history_frame`)."""
    return {name: history_frame(rows) for name, rows in phases.items()}


def history_to_json(history: Mapping[str, pd.DataFrame]) -> dict:
    """The column-wise form stored in ``config.json``."""
    return {name: {col: frame[col].tolist() for col in frame.columns} for name, frame in history.items()}


def history_from_json(saved) -> dict[str, pd.DataFrame]:
    """Read a stored history: the column-wise form, a dict of row lists, or a plain row list (one phase)."""
    if not saved:
        return {}
    if isinstance(saved, Mapping):
        return {name: history_frame(rows) for name, rows in saved.items()}
    return {"flow": history_frame(saved)}
