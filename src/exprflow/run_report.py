"""The report every command that makes a run writes: ``report.md`` and its figures, in one folder.

``exprflow demo``, ``fit``, ``generate`` and ``evaluate`` all call :func:`write_report`, so their
reports read the same::

    report.md     what was run (data, model, timings), the figures, and the metrics table with one line
                  per metric saying what it means and what good is
    umap.png      real vs generated cells in one UMAP (when both are at hand)
    metrics.png   per-condition metrics beside the floor (when the run was evaluated)
    loss.png      loss curves of each training phase (when a model was trained)

A figure that cannot be drawn (too few cells, say) is named in the report with the reason; it never
fails the run. ``plots=False`` (``--no-plots``) writes ``report.md`` alone.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from anndata import AnnData

from exprflow.io import write_text_atomic

logger = logging.getLogger(__name__)

_CAPTIONS = {
    "umap.png": "Real vs generated cells (one UMAP in the evaluation's PCA space)",
    "metrics.png": "Metrics per condition: model (red) beside the real-vs-real floor (grey)",
    "loss.png": "Training loss per phase",
}


def write_report(
    folder: str | os.PathLike,
    *,
    title: str,
    facts: list[str],
    result: dict | None = None,
    model=None,
    real: AnnData | None = None,
    generated: AnnData | None = None,
    reference: AnnData | None = None,
    layer: str | None = None,
    condition_key: str | None = None,
    counts: bool = True,
    plots: bool = True,
    seed: int = 0,
) -> Path:
    """Write ``report.md`` and the figures that the given pieces allow into ``folder``.

    Parameters
    ----------
    folder
        Output folder (created if needed).
    title
        First heading of the report.
    facts
        Bullet lines: data, model, timings.
    result
        An :func:`exprflow.metrics.evaluate` result (metrics table and ``metrics.png``).
    model
        A trained model (``loss.png`` from its ``history``).
    real, generated, reference
        Real and generated cells for ``umap.png`` (PCA fitted on ``reference``, default ``real``).
    layer, condition_key, counts
        As in :func:`exprflow.plotting.real_vs_generated`.
    plots
        ``False``: no figures.
    seed
        Seeds the UMAP.

    Returns
    -------
    pathlib.Path
        The path of ``report.md``.
    """
    from exprflow.metrics import format_report

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    drawn, failed = _figures(folder, result, model, real, generated, reference, layer, condition_key, counts,
                             seed) if plots else ([], {})
    lines = [f"# {title}", "", *[f"- {fact}" for fact in facts]]
    if drawn or failed:
        lines += ["", "## Figures", ""]
        lines += [f"![{_CAPTIONS[name]}]({name})" + "\n" for name in drawn]
        lines += [f"- {name} not drawn: {why}" for name, why in failed.items()]
    lines.append("")
    if result is not None:
        lines.append(format_report(result))
    else:
        lines.append("No evaluation in this run: `exprflow evaluate --real TEST.h5ad --generated GEN.h5ad --train "
                     "TRAIN.h5ad --out metrics.json` scores generated cells (docs/evaluation.md).\n")
    path = write_text_atomic("\n".join(lines), folder / "report.md")
    logger.info("report written to %s", path)
    return path


def _figures(folder: Path, result, model, real, generated, reference, layer, condition_key, counts,
             seed) -> tuple[list[str], dict[str, str]]:
    """Draw what the pieces allow; returns the figures drawn and, for those that failed, why."""
    from exprflow import plotting as pl

    jobs = {}
    if real is not None and generated is not None:
        jobs["umap.png"] = lambda path: pl.real_vs_generated(
            real, generated, reference=reference, condition_key=condition_key, layer=layer, counts=counts,
            seed=seed, save=path)
    if result is not None:
        jobs["metrics.png"] = lambda path: pl.metrics(result, save=path)
    if model is not None and any(len(frame) for frame in (getattr(model, "history", None) or {}).values()):
        jobs["loss.png"] = lambda path: pl.loss(model, save=path)
    drawn, failed = [], {}
    for name, draw in jobs.items():
        try:
            draw(folder / name)
            drawn.append(name)
        except Exception as exc:  # a figure never fails the run; the report says why it is missing
            logger.warning("%s not drawn: %s", name, exc)
            failed[name] = f"{type(exc).__name__}: {exc}"
    return drawn, failed
