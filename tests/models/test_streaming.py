"""Streamed generation: chunk contract, resume after an interruption gives the identical file, the file
is a valid AnnData of integer counts, and the CLI refuses bad outputs with exit code 2."""

from __future__ import annotations

import re

import anndata as ad
import numpy as np
import pytest
from click.testing import CliRunner
from synthetic import make_counts_adata

from exprflow.cli import cli
from exprflow.errors import ExprflowInputError
from exprflow.models import StateFlow
from exprflow.output.streaming import chunk_seed, generate_to_file, parts_folder


@pytest.fixture(scope="module")
def model():
    adata = make_counts_adata(n_cells=120, n_genes=30, seed=1)
    m = StateFlow(adata, condition_key="cell_type", backbone_kwargs={"hidden": 16, "depth": 1})
    return m.train(max_steps=2, batch_size=32, progress_bar=False)


def _same(a: ad.AnnData, b: ad.AnnData) -> None:
    assert (a.X != b.X).nnz == 0 and a.X.dtype == b.X.dtype
    assert list(a.obs_names) == list(b.obs_names)
    assert a.obs.equals(b.obs) and list(a.var_names) == list(b.var_names)


def test_chunks_follow_the_contract_and_file_is_valid_anndata(model, tmp_path):
    out = model.generate_to_file(tmp_path / "gen.h5ad", conditions={"type2": 25, "type0": 20}, chunk_size=20,
                                 seed=3, n_steps=2, progress_bar=False)
    adata = ad.read_h5ad(out)
    assert adata.shape == (45, 30) and adata.X.format == "csr"
    assert np.allclose(adata.X.data, np.round(adata.X.data)) and (adata.X.data >= 0).all()
    assert list(adata.obs["cell_type"]) == ["type2"] * 25 + ["type0"] * 20  # request order
    assert list(adata.obs["cell_type"].cat.categories) == model.levels
    assert set(adata.obs["source"]) == {"generated"} and re.fullmatch("gen_[0-9a-f]{8}_44", adata.obs_names[44])
    assert adata.uns["exprflow"]["n_chunks"] == 3 and adata.uns["exprflow"]["streamed"]
    # chunk 1 = cells 20..39 = 5 of type2 then 15 of type0, generated with chunk_seed(3, 1)
    direct = model.generate(conditions={"type2": 5, "type0": 15}, seed=chunk_seed(3, 1), n_steps=2)
    assert (adata.X[20:40] != direct.X).nnz == 0
    assert not parts_folder(out).exists()  # parts removed once the file is complete


def test_resume_after_interruption_gives_the_identical_file(model, tmp_path, monkeypatch):
    kwargs = dict(n_cells=70, chunk_size=16, seed=9, n_steps=2, progress_bar=False)
    reference = ad.read_h5ad(generate_to_file(model, tmp_path / "ref.h5ad", **kwargs))
    assert reference.obs["cell_type"].nunique() > 1  # levels drawn from the training frequencies

    target = tmp_path / "run.h5ad"
    real_generate, calls = model.generate, []

    def flaky(*args, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the run dies while generating chunk 2
        return real_generate(*args, **kw)

    monkeypatch.setattr(model, "generate", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate_to_file(model, target, **kwargs)
    monkeypatch.setattr(model, "generate", real_generate)
    assert not target.exists()  # never a half-written file under the final name
    assert sorted(p.name for p in parts_folder(target).glob("part_*.npz")) == ["part_000000.npz", "part_000001.npz"]
    with pytest.raises(ExprflowInputError, match="resume"):
        generate_to_file(model, target, **kwargs)
    with pytest.raises(ExprflowInputError, match="different request"):
        generate_to_file(model, target, **{**kwargs, "seed": 10}, resume=True)
    generate_to_file(model, target, **kwargs, resume=True)
    _same(ad.read_h5ad(target), reference)


def test_bad_requests_are_clear_errors(model, tmp_path):
    (tmp_path / "exists.h5ad").write_text("x")
    with pytest.raises(ExprflowInputError, match="already exists"):
        generate_to_file(model, tmp_path / "exists.h5ad", n_cells=5, progress_bar=False)
    with pytest.raises(ExprflowInputError, match=".h5ad"):
        generate_to_file(model, tmp_path / "out.csv", n_cells=5, progress_bar=False)
    with pytest.raises(ExprflowInputError, match="Unknown condition"):
        generate_to_file(model, tmp_path / "o.h5ad", conditions={"nope": 3}, progress_bar=False)
    with pytest.raises(ExprflowInputError, match="chunk_size"):
        generate_to_file(model, tmp_path / "o.h5ad", n_cells=5, chunk_size=0, progress_bar=False)


def test_cli_streamed_generate_resume_and_exit_codes(model, tmp_path):
    model.save(str(tmp_path / "run" / "model"))
    runner = CliRunner()
    out = tmp_path / "cli.h5ad"
    args = ["generate", str(tmp_path / "run"), "--n-cells", "33", "--out", str(out), "--chunk-size", "10",
            "--n-steps", "2", "--seed", "4"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    adata = ad.read_h5ad(out)
    assert adata.n_obs == 33 and adata.uns["exprflow"]["chunk_size"] == 10
    # the loaded model (EMA weights as backbone) writes the same cells as the model in memory
    same = model.generate_to_file(tmp_path / "mem.h5ad", n_cells=33, chunk_size=10, n_steps=2, seed=4,
                                  progress_bar=False)
    _same(adata, ad.read_h5ad(same))
    assert runner.invoke(cli, args).exit_code == 2  # exists, no --overwrite
    assert runner.invoke(cli, [*args, "--overwrite"]).exit_code == 0
    bad = runner.invoke(cli, ["generate", str(tmp_path / "run"), "--n-cells", "5", "--out", str(tmp_path / "x.csv"),
                              "--chunk-size", "5"])
    assert bad.exit_code == 2 and "h5ad" in bad.output
    missing = runner.invoke(cli, ["generate", str(tmp_path / "nope"), "--n-cells", "5", "--out", str(out)])
    assert missing.exit_code == 2
