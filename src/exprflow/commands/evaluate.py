"""``exprflow evaluate``: score generated cells with the evaluation protocol."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from exprflow.commands.generate import report_folder
from exprflow.commands.options import no_plots_option

logger = logging.getLogger("exprflow")


@click.command("evaluate")
@click.option("--real", "real_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Real held-out (test) cells.")
@click.option("--generated", "gen_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--train", "train_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Real training cells (PCA fit, floor, dcr). Without it the real file is split 50/50.")
@click.option("--layer", default=None, help="Layer of the real files holding counts (default: X).")
@click.option("--condition-key", default=None, help="obs column for per-condition metrics and label accuracy.")
@click.option("--no-counts", is_flag=True, help="Values are not counts (e.g. FPKM): log1p only.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="metrics.json to write.")
@no_plots_option
def evaluate_cmd(real_path, gen_path, train_path, layer, condition_key, no_counts, seed, out, no_plots) -> None:
    """Score generated cells with the evaluation protocol (docs/evaluation.md); writes metrics.json, prints the
    table (one line per metric says what it means and what good is) and writes OUT_report/report.md beside
    --out with figures (real vs generated UMAP, per-condition metrics)."""
    from exprflow.data import read_adata, split_indices
    from exprflow.io import write_text_atomic
    from exprflow.metrics import evaluate, format_report
    from exprflow.run_report import write_report

    real, generated = read_adata(real_path), read_adata(gen_path)
    if train_path is not None:
        train = read_adata(train_path)
    else:
        labels = real.obs[condition_key].astype(str).to_numpy() if condition_key in real.obs else None
        tr, te = split_indices(real.n_obs, None if labels is None else _codes(labels), test_fraction=0.5, seed=seed)
        train, real = real[tr].copy(), real[te].copy()
        logger.warning("no --train given: split the real file 50/50 into reference (train) and test halves")
    result = evaluate(real, generated, train, layer=layer, condition_key=condition_key, counts=not no_counts,
                      seed=seed)
    write_text_atomic(json.dumps(result, indent=2), out)
    click.echo(format_report(result))
    facts = [f"real test cells: `{real_path}`" + ("" if train_path else " (its other half: the train reference)"),
             f"generated cells: `{gen_path}`", f"train (reference) cells: `{train_path or real_path}`",
             f"metrics written to `{out}`"]
    report = write_report(report_folder(out), title="exprflow evaluate", facts=facts, result=result, real=real,
                          generated=generated, reference=train, layer=layer, condition_key=condition_key,
                          counts=not no_counts, plots=not no_plots, seed=seed)
    click.echo(f"report written to {report}")


def _codes(labels):
    import numpy as np

    return np.unique(labels, return_inverse=True)[1]


COMMANDS = [evaluate_cmd]
