"""CLI for several condition keys: --condition-key lists, --guidance KEY=W, --composition, --like combinations."""

from __future__ import annotations

import anndata as ad
import pytest
from click.testing import CliRunner

from exprflow.cli import cli
from exprflow.commands.conditions import parse_condition_keys, parse_guidance
from exprflow.errors import ExprflowInputError


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_parse_condition_keys_and_guidance():
    assert parse_condition_keys(()) is None
    assert parse_condition_keys(("cell_type",)) == "cell_type"
    assert parse_condition_keys(("cell_type,donor",)) == ["cell_type", "donor"]
    assert parse_condition_keys(("cell_type", "donor")) == ["cell_type", "donor"]
    assert parse_guidance(("2.5",)) == 2.5
    assert parse_guidance(("cell_type=2", "donor=0.5")) == {"cell_type": 2.0, "donor": 0.5}
    with pytest.raises(ExprflowInputError, match="KEY=NUMBER"):
        parse_guidance(("donor=big",))
    with pytest.raises(ExprflowInputError, match="once"):
        parse_guidance(("2", "donor=1"))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from condition_helpers import make_two_attribute_adata

    d = tmp_path_factory.mktemp("cond_cli")
    make_two_attribute_adata(n_cells=160, seed=4).write_h5ad(d / "train.h5ad")
    make_two_attribute_adata(n_cells=50, seed=5).write_h5ad(d / "test.h5ad")
    r = run("fit", "--data", d / "train.h5ad", "--condition-key", "cell_type", "--condition-key", "donor",
            "--model", "state", "--max-steps", 30, "--batch-size", 32, "--out", d / "run")
    assert r.exit_code == 0, r.output
    return d


def test_like_matches_combinations_with_per_attribute_guidance(files):
    d = files
    r = run("generate", d / "run", "--like", d / "test.h5ad", "--out", d / "gen.h5ad", "--n-steps", 4,
            "--guidance", "cell_type=2", "--guidance", "donor=1.5", "--composition", "product", "--no-plots")
    assert r.exit_code == 0, r.output
    gen, real = ad.read_h5ad(d / "gen.h5ad"), ad.read_h5ad(d / "test.h5ad")
    keys = ["cell_type", "donor"]
    count = lambda a: a.obs[keys].astype(str).value_counts().sort_index()  # noqa: E731
    assert count(gen).equals(count(real))
    assert gen.uns["exprflow"]["guidance"] == {"cell_type": 2.0, "donor": 1.5}


def test_cli_errors_exit_2(files):
    d = files
    r = run("generate", d / "run", "--n-cells", 5, "--out", d / "g2.h5ad", "--guidance", "batch=2")
    assert r.exit_code == 2 and "batch" in r.output and "Traceback" not in r.output
    r = run("fit", "--data", d / "train.h5ad", "--condition-key", "cell_type,donor", "--model", "perturbation",
            "--control-group", "d1", "--max-steps", 2, "--out", d / "bad")
    assert r.exit_code == 2 and "PerturbationFlow takes one" in r.output


def test_fit_latent_with_batch_key_then_generate(files):
    import json

    d = files
    r = run("fit", "--data", d / "train.h5ad", "--condition-key", "cell_type", "--model", "latent",
            "--model-kwargs", json.dumps({"batch_key": "donor", "vae": {"n_hidden": 32, "n_latent": 4}}),
            "--max-steps", 10, "--flow-steps", 10, "--out", d / "batch_run")
    assert r.exit_code == 0, r.output
    assert json.loads((d / "batch_run" / "model" / "config.json").read_text())["batch_levels"] == ["d1", "d2"]
    r = run("generate", d / "batch_run", "--n-cells", 12, "--out", d / "b.h5ad", "--n-steps", 2, "--no-plots")
    assert r.exit_code == 0, r.output
    assert ad.read_h5ad(d / "b.h5ad").obs["donor"].isna().all()
