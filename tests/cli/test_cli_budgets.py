"""Budget flags mean the same for every model: --vae-steps / --flow-steps per phase, --max-steps for every
phase not named (TrajectoryFlow on counts included), and --likelihood for every model with a count VAE."""

from click.testing import CliRunner
from synthetic import make_counts_adata

from exprflow.cli import cli
from exprflow.models import TrajectoryFlow


def test_trajectory_on_counts_takes_the_vae_flags(tmp_path):
    adata = make_counts_adata(n_cells=150, n_genes=20, seed=5)
    adata.obs["day"] = adata.obs["cell_type"].cat.codes.astype(float)
    adata.write_h5ad(tmp_path / "tc.h5ad")
    common = ["fit", "--data", str(tmp_path / "tc.h5ad"), "--model", "trajectory", "--time-key", "day",
              "--model-kwargs", '{"n_sequences": 64, "backbone_kwargs": {"width": 8, "depth": 1}}', "--no-plots"]
    r = CliRunner().invoke(cli, [*common, "--likelihood", "zinb", "--vae-steps", "6", "--flow-steps", "4",
                                 "--batch-size", "32", "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    model = TrajectoryFlow.load(tmp_path / "a" / "model")
    assert model.config.vae.likelihood == "zinb"
    assert len(model.history["vae"]) == 6 and len(model.history["flow"]) == 4
    r = CliRunner().invoke(cli, [*common, "--max-steps", "5", "--batch-size", "32", "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    model = TrajectoryFlow.load(tmp_path / "b" / "model")
    assert len(model.history["vae"]) == 5 and len(model.history["flow"]) == 5  # both phases, one meaning
