"""Per-condition metrics of an ``evaluate`` result: the model beside the real-vs-real floor."""

from __future__ import annotations

import os

import numpy as np

from exprflow.errors import ExprflowInputError
from exprflow.plotting._utils import finish, new_figure


def metrics(result: dict, *, keys: tuple[str, ...] | list[str] = ("energy", "w2", "c2st_knn"),
            save: str | os.PathLike | None = None, show: bool | None = None):
    """Bars per condition level: the model (colour) and the floor (grey) of each metric in ``keys``.

    Parameters
    ----------
    result
        What :func:`exprflow.metrics.evaluate` returned, with a ``condition_key`` (per-condition
        values); without one, the whole-population values are drawn as one group.
    keys
        Metrics to draw, one panel each (names as in ``result["metrics"]``).
    save, show
        As in :func:`~exprflow.plotting.real_vs_generated`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    per_model = result.get("per_condition") or {"all cells": result.get("metrics", {})}
    per_floor = result.get("per_condition_floor") or {"all cells": result.get("floor", {})}
    keys = [k for k in keys if any(v.get(k) is not None for v in per_model.values())]
    if not keys:
        raise ExprflowInputError("The result holds none of the requested metrics; pass keys= from "
                                 f"{sorted(result.get('metrics', {}))}.")
    levels = list(per_model)
    x = np.arange(len(levels))
    fig, axes = new_figure(len(keys), width=max(4.0, 0.5 * len(levels) + 2), height=3.6)
    for ax, key in zip(axes, keys):
        model = [np.nan if per_model[lv].get(key) is None else per_model[lv][key] for lv in levels]
        floor = [np.nan if per_floor.get(lv, {}).get(key) is None else per_floor[lv][key] for lv in levels]
        ax.bar(x - 0.2, model, width=0.4, color="tab:red", label="model")
        ax.bar(x + 0.2, floor, width=0.4, color="0.6", label="floor (real vs real)")
        if key.startswith("c2st"):
            ax.axhline(0.5, color="k", lw=0.8, ls="--", label="chance (0.5)")
        ax.set_xticks(x, levels, rotation=60, ha="right", fontsize=8)
        ax.set_title(key)
        ax.legend(frameon=False, fontsize=7)
    return finish(fig, save, show)
