"""The findings figure (benchmarks/findings_figure.py) and the cell subsample of benchmarks/sets_subsample.py."""

from __future__ import annotations

import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import findings_figure  # noqa: E402
import sets_subsample  # noqa: E402


def test_subsample_keeps_every_gene_and_is_fixed_by_its_seed():
    adata = ad.AnnData(np.arange(200 * 7, dtype=np.float32).reshape(200, 7))
    a = sets_subsample.subsample(adata, 50, seed=0)
    b = sets_subsample.subsample(adata, 50, seed=0)
    c = sets_subsample.subsample(adata, 50, seed=1)
    assert a.shape == (50, 7) and np.array_equal(a.X, b.X) and not np.array_equal(a.X, c.X)
    rows = a.X[:, 0] / 7
    assert np.all(np.diff(rows) > 0) and len(set(rows)) == 50  # file order, no repeats
    assert sets_subsample.subsample(adata, 500, seed=0) is adata  # fewer cells than asked: all of them
    assert adata.shape == (200, 7)  # the input is not modified


@pytest.mark.parametrize("title,ylabel,panel", findings_figure.PANELS, ids=[p[0] for p in findings_figure.PANELS])
def test_every_panel_reads_the_committed_results(title, ylabel, panel):
    points = panel()
    assert len(points) >= 3
    for name, family, cost, value in points:
        assert family in findings_figure.FAMILY, name
        assert np.isfinite(cost) and cost > 0 and np.isfinite(value) and value > 0, name


def test_plotted_values_are_the_benchmark_tables():
    """Spot values of BENCHMARKS.md (mean over seeds) come out of the result files unchanged."""
    pbmc = {name: value for name, _, _, value in findings_figure.panel_pbmc3k()}
    assert round(pbmc["latent:nb"], 3) == 1.445 and round(pbmc["state (2,000 steps)"], 3) == 5.024
    assert round(pbmc["mlp (13,000 steps)"], 3) == 4.746 and round(pbmc["rank_tokens (300 steps)"], 3) == 31.692
    dna = {name: value for name, _, _, value in findings_figure.panel_dna()}
    assert round(dna["hyena (1,200 steps)"], 3) == 1.929 and round(dna["k-mer k=7"], 4) == 1.9340
    pert = {name: value for name, _, _, value in findings_figure.panel_perturbation()}
    assert round(1 - pert["pflow_mlp"], 3) == 0.909 and round(1 - pert["pflow_s4d"], 3) == 0.906
