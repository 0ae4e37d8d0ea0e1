"""exprflow.pl: every figure is drawn from the objects users hold and saved as a PNG; bad input is a
clear error; run_report writes the same report.md + figures for every run."""

from __future__ import annotations

import anndata as ad
import matplotlib
import numpy as np
import pandas as pd
import pytest
from synthetic import make_counts_adata

import exprflow as ef
from exprflow.errors import ExprflowInputError
from exprflow.training.history import history_from_json, history_to_json, training_history
from exprflow.run_report import write_report

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def cells():
    real = make_counts_adata(n_cells=150, n_genes=30, seed=1)
    generated = make_counts_adata(n_cells=120, n_genes=30, seed=2)
    generated.obs_names = [f"gen_{i}" for i in range(generated.n_obs)]
    return real, generated


def _png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pl_is_the_plotting_module():
    assert ef.pl.real_vs_generated is ef.plotting.real_vs_generated
    assert set(ef.pl.__all__) == {"real_vs_generated", "metrics", "loss", "trajectories", "fold_changes", "fold_change_panels"}


def test_real_vs_generated(cells, tmp_path):
    real, generated = cells
    fig = ef.pl.real_vs_generated(real, generated, condition_key="cell_type", basis="pca", save=tmp_path / "a.png")
    assert _png(tmp_path / "a.png") and len(fig.axes) == 3
    shuffled = generated[:, list(reversed(generated.var_names))].copy()  # gene order is matched by name
    assert len(ef.pl.real_vs_generated(real, shuffled, basis="pca").axes) == 1
    with pytest.raises(ExprflowInputError, match="basis"):
        ef.pl.real_vs_generated(real, generated, basis="tsne")
    with pytest.raises(ExprflowInputError, match="no obs column 'batch'"):
        ef.pl.real_vs_generated(real, generated, condition_key="batch")


def test_loss_from_model_history(tmp_path):
    history = training_history(vae=[(0, 5.0, 4.0, 1.0), (1, 4.0, 3.5, 0.5)], flow=[(i, 1.0 / (i + 1)) for i in range(9)])
    assert list(history["vae"].columns) == ["step", "loss", "recon", "kl"] and history["flow"]["step"].dtype == np.int64
    back = history_from_json(history_to_json(history))
    pd.testing.assert_frame_equal(back["flow"], history["flow"])
    assert list(history_from_json([[0, 1.0], [1, 0.5]])) == ["flow"]  # a history saved as a list still loads
    fig = ef.pl.loss(history, save=tmp_path / "loss.png")
    assert _png(tmp_path / "loss.png") and len(fig.axes) == 2
    with pytest.raises(ExprflowInputError, match="no training steps"):
        ef.pl.loss({"flow": history["flow"].iloc[:0]})


def test_metrics_bars(cells, tmp_path):
    result = {"metrics": {"energy": 1.0}, "floor": {"energy": 0.5},
              "per_condition": {"A": {"energy": 1.2, "c2st_knn": 0.7}, "B": {"energy": 0.8, "c2st_knn": 0.6}},
              "per_condition_floor": {"A": {"energy": 0.5, "c2st_knn": 0.5}, "B": {"energy": 0.4, "c2st_knn": 0.5}}}
    fig = ef.pl.metrics(result, save=tmp_path / "m.png")
    assert _png(tmp_path / "m.png") and [ax.get_title() for ax in fig.axes] == ["energy", "c2st_knn"]
    with pytest.raises(ExprflowInputError, match="none of the requested metrics"):
        ef.pl.metrics(result, keys=["nope"])


def test_trajectories_draw_off_lineage_cells_grey(tmp_path):
    real = make_counts_adata(n_cells=90, n_genes=20, seed=3)
    real.obs["t"] = np.linspace(0, 1, real.n_obs)
    real.obs["w"] = (np.arange(real.n_obs) % 3 != 0).astype(float)  # every third cell off the lineage
    gen = make_counts_adata(n_cells=12, n_genes=20, seed=4)
    gen.obs["trajectory"] = np.repeat(np.arange(4), 3)
    gen.obs["t"] = np.tile([0.0, 0.5, 1.0], 4)
    fig = ef.pl.trajectories(real, gen, time_key="t", weight_key="w", save=tmp_path / "t.png")
    coloured = fig.axes[0].collections[1]  # real cells on the lineage, coloured by time
    assert len(coloured.get_offsets()) == 60 and "off the lineage (30)" in fig.axes[0].get_legend_handles_labels()[1]
    assert _png(tmp_path / "t.png")


def test_fold_changes(tmp_path):
    ctrl = make_counts_adata(n_cells=80, n_genes=25, seed=5)
    stim = ctrl.copy()
    stim.X = stim.X.multiply(np.r_[np.full(5, 4.0), np.ones(20)]).tocsr()  # five genes up
    fig = ef.pl.fold_changes(ctrl, stim, stim, save=tmp_path / "f.png")
    assert "Pearson r = 1.000" in fig.axes[0].get_title() and _png(tmp_path / "f.png")
    with pytest.raises(ExprflowInputError, match="same order"):
        ef.pl.fold_changes(ctrl, stim[:, ::-1], stim)


def test_run_report_explains_metrics_and_names_missing_figures(cells, tmp_path):
    from exprflow.metrics import evaluate

    real, generated = cells
    train = make_counts_adata(n_cells=150, n_genes=30, seed=7)
    result = evaluate(real, generated, train, condition_key="cell_type")
    path = write_report(tmp_path / "r", title="a run", facts=["data: x"], result=result, real=real,
                        generated=generated, reference=train, condition_key="cell_type")
    text = path.read_text()
    assert text.startswith("# a run\n\n- data: x") and "![" in text and "(umap.png)" in text
    assert "- `c2st_knn`:" in text and "All cells pooled" in text
    assert _png(tmp_path / "r" / "umap.png") and _png(tmp_path / "r" / "metrics.png")
    broken = ad.AnnData(X=generated.X[:, :5], obs=generated.obs, var=generated.var.iloc[:5])  # other genes
    text = write_report(tmp_path / "s", title="b", facts=[], real=real, generated=broken).read_text()
    assert "umap.png not drawn: ExprflowInputError" in text and "No evaluation in this run" in text
    write_report(tmp_path / "n", title="c", facts=[], result=result, real=real, generated=generated, plots=False)
    assert sorted(p.name for p in (tmp_path / "n").iterdir()) == ["report.md"]
