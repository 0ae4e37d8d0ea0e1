"""Pathway tokens inside the flow on real data (PBMC3k subset, MSigDB Hallmark): train, generate, save,
load, embed, and the CLI (``exprflow fit --model pathway``)."""

import anndata as ad
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from exprflow.cli import cli
from exprflow.models import MODELS, PathwayFlow, StateFlow

SMALL = {"hidden": 16, "depth": 1, "heads": 2, "time_dim": 16, "min_set_size": 5}


@pytest.fixture(scope="module")
def hallmark(pbmc3k_path) -> str:
    """MSigDB Hallmark beside the real datasets in ../shared/data."""
    return str(pbmc3k_path.parent / "genesets" / "h.all.v7.5.1.symbols.gmt")


@pytest.fixture(scope="module")
def pbmc_small(pbmc3k):
    """200 PBMC3k cells x 600 genes (human symbols)."""
    rng = np.random.default_rng(0)
    adata = pbmc3k[np.sort(rng.choice(pbmc3k.n_obs, 200, replace=False)), :600].copy()
    return adata[np.asarray(adata.X.sum(axis=1)).ravel() > 0].copy()


def test_state_flow_with_pathway_backbone(pbmc_small, hallmark, tmp_path):
    before = pbmc_small.copy()
    torch.manual_seed(0)
    model = StateFlow(pbmc_small, condition_key="cell_type", backbone="pathway",
                      backbone_kwargs={"gene_sets": hallmark, **SMALL})
    report = model.backbone.coverage_report
    assert report.n_sets_kept > 10 and 0.15 < report.coverage < 0.6
    model.train(max_steps=15, batch_size=64, progress_bar=False)
    assert np.isfinite(model.history["flow"]["loss"]).all()
    fake = model.generate(n_cells=24, n_steps=3, seed=1)
    assert fake.shape == (24, pbmc_small.n_vars) and fake.X.sum() > 0
    model.save(str(tmp_path / "m"))
    loaded = StateFlow.load(str(tmp_path / "m"), adata=pbmc_small)
    torch.testing.assert_close(loaded.backbone.gene_index, model.backbone.gene_index)
    np.testing.assert_array_equal(loaded.generate(n_cells=24, n_steps=3, seed=1).X.toarray(), fake.X.toarray())
    emb = loaded.get_cell_embedding(pbmc_small)
    assert emb.shape == (pbmc_small.n_obs, 16) and np.isfinite(emb).all()
    # the user's AnnData is untouched
    assert (pbmc_small.X != before.X).nnz == 0 and pbmc_small.obs.equals(before.obs)
    assert list(pbmc_small.uns) == list(before.uns)


def test_pathway_model_and_random_control(pbmc_small, hallmark):
    assert MODELS.get("pathway") is PathwayFlow
    real = PathwayFlow(pbmc_small, backbone_kwargs={"gene_sets": hallmark, **SMALL})
    control = PathwayFlow(pbmc_small, backbone_kwargs={"gene_sets": hallmark, "control": "random", **SMALL})
    assert real.config.backbone == "pathway"
    assert sorted(torch.bincount(real.backbone.set_index).tolist()) == \
        sorted(torch.bincount(control.backbone.set_index).tolist())
    assert not torch.equal(real.backbone.gene_index, control.backbone.gene_index)


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_cli_fit_pathway(pbmc_small, hallmark, tmp_path):
    data = tmp_path / "pbmc.h5ad"
    pbmc_small.write_h5ad(data)
    opts = '{"gene_sets": "%s", "hidden": 8, "depth": 1, "heads": 2, "time_dim": 8, "min_set_size": 5}'
    r = run("fit", "--model", "pathway", "--data", data, "--condition-key", "cell_type", "--backbone-kwargs",
            opts % hallmark, "--max-steps", 3, "--batch-size", 32, "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    r = run("generate", tmp_path / "run", "--n-cells", 10, "--n-steps", 2, "--out", tmp_path / "fake.h5ad")
    assert r.exit_code == 0, r.output
    r = run("embed", tmp_path / "run", "--data", data, "--out", tmp_path / "emb.h5ad")
    assert r.exit_code == 0, r.output
    assert ad.read_h5ad(tmp_path / "emb.h5ad").obsm["X_exprflow"].shape == (pbmc_small.n_obs, 8)
    bad = tmp_path / "bad.gmt"
    bad.write_text("NOT A GMT FILE\n")
    r = run("fit", "--model", "pathway", "--data", data, "--backbone-kwargs", opts % bad, "--max-steps", 2,
            "--out", tmp_path / "bad_run")
    assert r.exit_code == 2 and "tab-separated" in r.output and "Traceback" not in r.output
    r = run("fit", "--model", "pathway", "--data", data, "--max-steps", 2, "--out", tmp_path / "no_sets")
    assert r.exit_code == 2 and "needs gene sets" in r.output
