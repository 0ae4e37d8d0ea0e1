"""User errors on the command line are worded for it: flags, not the keyword arguments of the Python API."""

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from synthetic import make_counts_adata

from exprflow.cli import cli
from exprflow.data import prepare_counts
from exprflow.errors import ExprflowInputError, cli_wording


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("python,cli_text", [
    ("Pass overwrite=True (CLI: --overwrite) or choose another directory.", "Pass --overwrite or choose another directory."),
    ("Pass resume=True (--resume) to continue it, or overwrite=True (--overwrite) to start again.",
     "Pass --resume to continue it, or --overwrite to start again."),
    ("Pass e.g. layer='counts', or layer=None to use adata.X.", "Pass e.g. --layer counts, or no --layer to use adata.X."),
    ("condition_key 'x' is not a column. Pass one of them, or condition_key=None.",
     "--condition-key 'x' is not a column. Pass one of them, or no --condition-key."),
    ("Give n_cells >= 1, or conditions={level: n_cells, ...}.", "Give --n-cells >= 1, or --like FILE"),
    ("pass backbone_kwargs={'gene_sets': 'sets.gmt'}", "pass --backbone-kwargs '{\"gene_sets\": \"sets.gmt\"}'"),
    ("or pass on_unknown='drop'.", "or pass --drop-unknown-genes."),
    ("use require_counts=False", "use --model trajectory --model-kwargs '{\"representation\": \"gaussian\"}'"),
    ("reorder it with adata[:, model.var_names]; adata.obs['condition_key']", "adata.obs['condition_key']"),
])
def test_keyword_arguments_become_flags(python, cli_text):
    assert cli_text in cli_wording(python)


def test_python_users_keep_keyword_arguments():
    adata = make_counts_adata(n_cells=20, n_genes=5)
    with pytest.raises(ExprflowInputError) as err:
        prepare_counts(adata, condition_key="nope")
    assert "condition_key=None" in str(err.value)
    assert "no --condition-key" in err.value.cli_message() and "condition_key=None" not in err.value.cli_message()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("wording")
    adata = make_counts_adata(n_cells=120, n_genes=20, seed=4)
    adata.write_h5ad(d / "train.h5ad")
    floats = adata.copy()
    floats.X = floats.X.astype(np.float32)
    floats.X.data += 0.5
    floats.write_h5ad(d / "float.h5ad")
    other = make_counts_adata(n_cells=30, n_genes=20, seed=5)
    other.var_names = [f"other{i}" for i in range(20)]
    other.write_h5ad(d / "other_genes.h5ad")
    ad.AnnData(obs=pd.DataFrame({"cell_type": ["type0"] * 7 + ["type1"] * 5},
                                index=[f"c{i}" for i in range(12)])).write_h5ad(d / "no_genes.h5ad")
    r = run("fit", "--data", d / "train.h5ad", "--condition-key", "cell_type", "--model", "state", "--max-steps", 5,
            "--backbone-kwargs", json.dumps({"hidden": 16, "depth": 1}), "--out", d / "run")
    assert r.exit_code == 0, r.output
    return d


@pytest.mark.parametrize("args,flag,keyword", [
    (["fit", "--data", "{d}/float.h5ad", "--out", "{d}/x1"], "--layer counts", "layer="),
    (["fit", "--data", "{d}/train.h5ad", "--condition-key", "nope", "--out", "{d}/x2"], "no --condition-key",
     "condition_key"),
    (["fit", "--data", "{d}/train.h5ad", "--layer", "counts", "--out", "{d}/x3"], "no --layer", "layer="),
    (["fit", "--data", "{d}/float.h5ad", "--model", "state", "--out", "{d}/x4"], "--model trajectory",
     "require_counts"),
])
def test_cli_errors_name_flags(files, args, flag, keyword):
    r = run(*[a.format(d=files) for a in args])
    assert r.exit_code == 2 and flag in r.output, r.output
    assert keyword not in r.output and "Traceback" not in r.output


def test_generate_like_checks_the_files_genes(files, caplog):
    d = files
    r = run("generate", d / "run", "--like", d / "other_genes.h5ad", "--out", d / "g1.h5ad", "--n-steps", 2)
    assert r.exit_code == 2 and "other genes than the model" in r.output and "--n-cells" in r.output
    assert not (d / "g1.h5ad").exists()
    r = run("generate", d / "run", "--like", d / "no_genes.h5ad", "--out", d / "g2.h5ad", "--n-steps", 2)
    assert r.exit_code == 0, r.output
    assert "holds no genes" in caplog.text
    gen = ad.read_h5ad(d / "g2.h5ad")
    assert gen.obs["cell_type"].astype(str).value_counts().to_dict() == {"type0": 7, "type1": 5}


def test_generate_refuses_a_truncated_config_or_an_unfinished_run(files):
    d = files
    import shutil

    shutil.copytree(d / "run", d / "broken")
    cfg = d / "broken" / "model" / "config.json"
    cfg.write_text(cfg.read_text()[:100])
    r = run("generate", d / "broken" / "model", "--n-cells", 5, "--out", d / "g3.h5ad")
    assert r.exit_code == 2 and "not valid JSON" in r.output and "Traceback" not in r.output
    shutil.copytree(d / "run", d / "unfinished")
    record = json.loads((d / "unfinished" / "run.json").read_text())
    record["exprflow_run"]["status"] = "running"
    (d / "unfinished" / "run.json").write_text(json.dumps(record))
    for cmd in (["generate", d / "unfinished", "--n-cells", 5, "--out", d / "g4.h5ad"],
                ["embed", d / "unfinished", "--data", d / "train.h5ad", "--out", d / "e.h5ad"]):
        r = run(*cmd)
        assert r.exit_code == 2 and "did not finish" in r.output and "--resume" in r.output, r.output
