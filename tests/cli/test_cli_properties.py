"""Property test of the command line: a random small .h5ad with random defects (NaN, Inf, negative or
fractional counts, empty cells and genes, duplicated or categorical gene names, a missing or single-level
condition column, dense / CSR / CSC storage) given to ``exprflow fit`` ends in exit code 0 with a saved
model, or exit code 2 with a one-paragraph error: never a traceback, never another exit code. The input
file is never modified. A model is then asked to embed files whose genes do not match (exit 2)."""

from __future__ import annotations

import hashlib
import json
import logging
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exprflow.cli import cli

DEFECTS = ["nan", "inf", "negative", "fraction", "zero_cell", "zero_gene", "dup_genes", "categorical_dup_genes",
           "categorical_genes", "missing_key", "single_level", "none", "none"]


@st.composite
def h5ad_cases(draw):
    n_cells, n_genes = draw(st.integers(4, 24)), draw(st.integers(2, 10))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    X = (rng.poisson(3.0, size=(n_cells, n_genes)) * (rng.random((n_cells, n_genes)) < 0.7)).astype(np.float32)
    X[np.arange(n_cells), rng.integers(n_genes, size=n_cells)] += 1  # no accidental empty cells
    genes = [f"g{j}" for j in range(n_genes)]
    labels = np.array(["a", "b"])[np.arange(n_cells) % 2]
    defects = draw(st.lists(st.sampled_from(DEFECTS), max_size=2, unique=True))
    i, j = rng.integers(n_cells), rng.integers(n_genes)
    # zeroing first, so that a bad value placed afterwards is never wiped out by it
    for defect in sorted(defects, key=lambda d: d not in ("zero_cell", "zero_gene")):
        if defect in ("nan", "inf", "negative", "fraction"):
            X[i, j] = {"nan": np.nan, "inf": np.inf, "negative": -1.0, "fraction": 0.5}[defect]
        elif defect == "zero_cell":
            X[i] = 0
        elif defect == "zero_gene":
            X[:, j] = 0
        elif defect in ("dup_genes", "categorical_dup_genes") and n_genes > 1:
            genes[1] = genes[0]
        elif defect == "single_level":
            labels[:] = "a"
    fmt = draw(st.sampled_from(["dense", "csr", "csc"]))
    matrix = X if fmt == "dense" else (sp.csr_matrix(X) if fmt == "csr" else sp.csc_matrix(X))
    obs = pd.DataFrame({"cell_type": pd.Categorical(labels)}, index=[f"c{k}" for k in range(n_cells)])
    if "missing_key" in defects:
        obs = obs.drop(columns="cell_type")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata: "Variable names are not unique"
        adata = ad.AnnData(X=matrix, obs=obs, var=pd.DataFrame(index=pd.Index(genes, dtype=object)))
        if "categorical" in " ".join(defects):
            adata.var_names = pd.CategoricalIndex(genes)
    return adata, defects, draw(st.booleans())


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_clean(result) -> None:
    """Exit 0, or exit 2 with an ``error:`` paragraph; no traceback, no other exception."""
    assert result.exit_code in (0, 2), (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert result.output.strip().startswith("error:") or "Error:" in result.output
    else:
        assert result.exception is None


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(case=h5ad_cases())
def test_fit_on_random_defective_files_exits_cleanly(tmp_path_factory, case):
    adata, defects, conditional = case
    d = tmp_path_factory.mktemp("prop")
    path = d / "data.h5ad"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata.write_h5ad(path)
    before = _digest(path)
    args = ["fit", "--data", str(path), "--model", "state", "--max-steps", "2", "--batch-size", "4",
            "--backbone-kwargs", '{"hidden": 8, "depth": 1}', "--out", str(d / "run")]
    if conditional:
        args[3:3] = ["--condition-key", "cell_type"]
    logging.disable(logging.WARNING)
    try:
        result = CliRunner().invoke(cli, args)
    finally:
        logging.disable(logging.NOTSET)
    _assert_clean(result)
    assert _digest(path) == before, "the input file was modified"
    bad_values = {"nan", "inf", "negative", "fraction"} & set(defects)
    duplicated = {"dup_genes", "categorical_dup_genes"} & set(defects)
    if bad_values or duplicated or (conditional and "missing_key" in defects):
        assert result.exit_code == 2, (defects, result.output)
    if result.exit_code == 0:
        saved = json.loads((d / "run" / "model" / "config.json").read_text())
        assert saved["var_names"] == [str(g) for g in adata.var_names]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from synthetic import make_counts_adata

    d = tmp_path_factory.mktemp("mismatch")
    make_counts_adata(n_cells=60, n_genes=12, seed=3).write_h5ad(d / "train.h5ad")
    result = CliRunner().invoke(cli, ["fit", "--data", str(d / "train.h5ad"), "--model", "latent", "--max-steps", "3",
                                      "--flow-steps", "3", "--batch-size", "16", "--out", str(d / "run")])
    assert result.exit_code == 0, result.output
    return d


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drop=st.integers(0, 11), extra=st.booleans(), shuffle=st.booleans())
def test_embed_with_mismatched_genes_exits_2(trained_run, drop, extra, shuffle):
    from synthetic import make_counts_adata

    adata = make_counts_adata(n_cells=10, n_genes=12, seed=9)
    keep = [g for k, g in enumerate(adata.var_names) if k != drop]
    adata = adata[:, keep[::-1] if shuffle else keep].copy()
    if extra:
        adata = ad.concat([adata, ad.AnnData(sp.csr_matrix(np.ones((10, 1), np.float32)),
                                             obs=adata.obs, var=pd.DataFrame(index=["unknown"]))], axis=1,
                          merge="first")
    path = trained_run / f"panel_{drop}_{extra}_{shuffle}.h5ad"
    adata.write_h5ad(path)
    result = CliRunner().invoke(cli, ["embed", str(trained_run / "run"), "--data", str(path), "--out",
                                      str(trained_run / "emb.h5ad"), "--overwrite"])
    _assert_clean(result)
    assert result.exit_code == 2 and "genes" in result.output
