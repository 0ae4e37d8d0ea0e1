"""``exprflow fit --reflow-steps``: the saved model is reflowed and ``generate`` then takes one Euler step."""

import anndata as ad
import pytest
from click.testing import CliRunner
from synthetic import make_counts_adata

from exprflow.cli import cli


@pytest.mark.slow
def test_fit_with_reflow_generates_with_one_euler_step(tmp_path):
    make_counts_adata(n_cells=120, n_genes=20, seed=2).write_h5ad(tmp_path / "train.h5ad")
    run = CliRunner().invoke(cli, ["fit", "--data", str(tmp_path / "train.h5ad"), "--condition-key", "cell_type",
                                   "--max-steps", "20", "--flow-steps", "20", "--reflow-steps", "10",
                                   "--out", str(tmp_path / "run")], catch_exceptions=False)
    assert run.exit_code == 0, run.output
    gen = CliRunner().invoke(cli, ["generate", str(tmp_path / "run"), "--n-cells", "30",
                                   "--out", str(tmp_path / "g.h5ad")], catch_exceptions=False)
    assert gen.exit_code == 0, gen.output
    prov = ad.read_h5ad(tmp_path / "g.h5ad").uns["exprflow"]
    assert prov["nfe"] == 1 and prov["solver"] == "euler"
