"""The scVI prior-sampling baseline (benchmarks/baselines/scvi_prior.py) on a small PBMC3k subset."""

from __future__ import annotations

import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

pytest.importorskip("scvi")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from baselines.scvi_prior import scvi_prior_generate  # noqa: E402

KEY = "cell_type"


@pytest.fixture(scope="module")
def small(pbmc3k) -> ad.AnnData:
    """300 cells x 200 genes, dropping levels with under 5 cells in the subset."""
    rng = np.random.default_rng(0)
    sub = pbmc3k[np.sort(rng.choice(pbmc3k.n_obs, 300, replace=False)), :200].copy()
    counts = sub.obs[KEY].astype(str).value_counts()
    keep = sub.obs[KEY].astype(str).isin(counts.index[counts >= 5]).to_numpy()
    sub = sub[keep].copy()
    sub.obs[KEY] = sub.obs[KEY].astype(str).astype("category")
    return sub


@pytest.fixture(scope="module")
def request_labels(small) -> np.ndarray:
    return np.random.default_rng(1).permutation(small.obs[KEY].astype(str).to_numpy())[:250]


@pytest.fixture(scope="module")
def run(small, request_labels):
    x_before, obs_before = small.X.copy(), small.obs.copy()
    gen, info = scvi_prior_generate(small, KEY, request_labels, request_labels.size, max_epochs=2, seed=0)
    return gen, info, x_before, obs_before


def _totals(x) -> np.ndarray:
    return np.asarray(x.sum(axis=1)).ravel()


def test_output_format(small, request_labels, run):
    gen, info, _, _ = run
    assert gen.shape == (request_labels.size, small.n_vars)
    assert sp.issparse(gen.X) and gen.X.format == "csr"
    data = gen.X.data
    assert np.all(data >= 0) and np.array_equal(data, np.rint(data))
    assert list(gen.var_names) == list(small.var_names)
    assert isinstance(gen.obs[KEY].dtype, pd.CategoricalDtype)
    np.testing.assert_array_equal(gen.obs[KEY].astype(str).to_numpy(), request_labels)
    assert (gen.obs["source"] == "generated").all()
    assert info["max_epochs"] == 2 and info["n_latent"] == 10 and info["likelihood"] == "nb"
    assert info["train_wall_s"] > 0 and info["train_cpu_s"] >= 0 and info["scvi_version"]


def test_caller_adata_unchanged(small, run):
    _, _, x_before, obs_before = run
    assert (small.X != x_before).nnz == 0
    pd.testing.assert_frame_equal(small.obs, obs_before)
    assert not any(c.startswith("_scvi") for c in small.obs.columns) and "_scvi_uuid" not in small.uns


def test_library_sizes_plausible(small, run):
    gen = run[0]
    ratio = np.median(_totals(gen.X)) / np.median(_totals(small.X))
    assert 1 / 3 < ratio < 3
    # per level too, for the levels with enough generated cells
    for level in gen.obs[KEY].cat.categories:
        g = _totals(gen.X[(gen.obs[KEY] == level).to_numpy()])
        t = _totals(small.X[(small.obs[KEY] == level).to_numpy()])
        if g.size >= 20:
            assert 1 / 3 < np.median(g) / np.median(t) < 3, level


def test_same_seed_same_output(small, request_labels, run):
    gen2, _ = scvi_prior_generate(small, KEY, request_labels, request_labels.size, max_epochs=2, seed=0)
    assert (gen2.X != run[0].X).nnz == 0
    pd.testing.assert_frame_equal(gen2.obs, run[0].obs)
    gen3, _ = scvi_prior_generate(small, KEY, request_labels, request_labels.size, max_epochs=2, seed=1)
    assert (gen3.X != run[0].X).nnz > 0


def test_unconditional_zinb(small):
    gen, info = scvi_prior_generate(small, None, None, 40, likelihood="zinb", max_epochs=1, seed=3)
    assert gen.shape == (40, small.n_vars)
    assert list(gen.obs.columns) == ["source"]
    assert info["likelihood"] == "zinb" and np.array_equal(gen.X.data, np.rint(gen.X.data))


def test_unknown_level_fails_fast(small):
    with pytest.raises(ValueError, match="Unknown condition"):
        scvi_prior_generate(small, KEY, np.array(["not a cell type"]), 1, max_epochs=1)
