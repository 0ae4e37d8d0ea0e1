"""Loss curves of each training phase."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import pandas as pd

from exprflow.errors import ExprflowInputError
from exprflow.plotting._utils import finish, new_figure

_YLABELS = {"flow": "flow-matching loss (MSE)", "vae": "VAE loss (-ELBO per cell)"}


def loss(history, *, title: str = "training loss", save: str | os.PathLike | None = None,
         show: bool | None = None):
    """Per-step loss (faint) and its moving average (bold) against the step, one panel per phase.

    Parameters
    ----------
    history
        A trained model (its ``history``) or ``model.history`` itself: ``{phase: DataFrame}`` with
        columns ``step`` and ``loss`` (e.g. ``{"vae": ..., "flow": ...}``).
    title
        Title (prefix of each phase's title when there are several).
    save, show
        As in :func:`~exprflow.plotting.real_vs_generated`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    history = getattr(history, "history", history)
    if isinstance(history, pd.DataFrame):
        history = {"flow": history}
    if not isinstance(history, Mapping) or not history:
        raise ExprflowInputError("Nothing to plot: give a trained model or its history ({phase: DataFrame}).")
    phases = {name: frame for name, frame in history.items() if len(frame)}
    if not phases:
        raise ExprflowInputError("The history holds no training steps (is the model trained?).")
    fig, axes = new_figure(len(phases), width=5.5, height=3.5)
    for ax, (name, frame) in zip(axes, phases.items()):
        steps = np.asarray(frame["step"], dtype=float)
        values = np.asarray(frame["loss"], dtype=float)
        ax.plot(steps, values, color="tab:blue", alpha=0.25, lw=0.8, label="per step")
        if values.size >= 5:
            w = max(5, values.size // 50)
            smooth = np.convolve(values, np.ones(w) / w, mode="valid")
            ax.plot(steps[w - 1 :], smooth, color="tab:blue", lw=2, label=f"moving average ({w})")
        if values.size and values.min() > 0 and values.max() / values.min() > 20:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(_YLABELS.get(name, "loss"))
        ax.set_title(title if len(phases) == 1 else f"{title}: {name}")
        ax.legend(frameon=False)
    return finish(fig, save, show)
