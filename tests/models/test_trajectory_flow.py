"""TrajectoryFlow on real time courses (hsmm FPKM, paul15 pseudotime bins), persistence and the CLI."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
from click.testing import CliRunner
from shared_data import shared_path

from exprflow.cli import cli
from exprflow.errors import ExprflowInputError
from exprflow.models import MODELS
from exprflow.models.trajectory_flow import TrajectoryFlow

SMALL = {"n_latent": 6, "n_sequences": 256, "backbone_kwargs": {"width": 16, "depth": 2}}


@pytest.fixture(scope="module")
def hsmm() -> ad.AnnData:
    adata = ad.read_h5ad(shared_path("hsmm_timecourse_fpkm.h5ad"))
    y = np.log1p(adata.X.toarray())
    return adata[:, np.sort(np.argsort(-y.var(0))[:500])].copy()


@pytest.fixture(scope="module")
def hsmm_loo(hsmm):
    """Trained without the 24 h cells; 24 h is a grid step without data."""
    train = hsmm[hsmm.obs["Hours"].astype(int) != 24].copy()
    before = train.copy()
    model = TrajectoryFlow(train, time_key="Hours", time_points=[0, 24, 48, 72], **SMALL)
    model.train(max_steps=30, batch_size=32, progress_bar=False)
    return model, train, before


def test_hsmm_predicts_a_held_out_time_point(hsmm_loo):
    model, train, before = hsmm_loo
    assert model.representation_name == "gaussian" and model.time_labels == ["0", "24", "48", "72"]
    np.testing.assert_array_equal(model.present, [True, False, True, True])
    pred = model.predict(24, n_cells=20, n_steps=4)
    assert pred.shape == (20, 500) and (pred.obs["Hours"] == 24.0).all()
    assert (pred.obs["source"] == "generated").all() and list(pred.var_names) == list(train.var_names)
    values = pred.X.toarray()
    assert np.isfinite(values).all() and (values >= 0).all()
    # the user's AnnData is untouched by setup, training and prediction
    assert (train.X != before.X).nnz == 0 and train.obs.equals(before.obs)
    with pytest.raises(ExprflowInputError, match="not on the model's time grid"):
        model.predict(30, n_cells=5)


def test_numeric_times_between_grid_points(hsmm_loo):
    model, _, _ = hsmm_loo
    near = model.predict(30, n_cells=6, n_steps=2, seed=2, method="nearest")  # grid 0, 24, 48, 72: 24 is nearest
    exact = model.predict(24, n_cells=6, n_steps=2, seed=2)
    np.testing.assert_array_equal(near.X.toarray(), exact.X.toarray())
    assert near.uns["exprflow"]["grid_steps"] == ["24", "24"]
    mid = model.predict(36, n_cells=6, n_steps=2, seed=2, method="interpolate", decode="mean")
    assert (mid.obs["Hours"] == 36.0).all() and mid.uns["exprflow"]["grid_steps"] == ["24", "48"]
    assert mid.uns["exprflow"]["weight"] == pytest.approx(0.5)
    states, _ = model.sample_states(6, context="observed", n_steps=2, seed=2)
    expected = model.representation.decode(0.5 * states[:, 1] + 0.5 * states[:, 2], np.random.default_rng(2), sample=False)
    np.testing.assert_allclose(mid.X.toarray(), np.asarray(expected.todense() if hasattr(expected, "todense")
                                                              else expected), rtol=1e-5)
    with pytest.raises(ExprflowInputError, match="method='nearest'"):
        model.predict(36, n_cells=2)  # a grid of observed times: off-grid times only on request
    with pytest.raises(ExprflowInputError, match="times 0 to 72"):
        model.predict(100, n_cells=2, method="nearest")


def test_generated_trajectories_and_observed_steps_reproduced(hsmm_loo):
    model, _, _ = hsmm_loo
    traj = model.generate_trajectories(6, n_steps=4)
    assert traj.n_obs == 24 and list(traj.obs["trajectory"]) == list(np.repeat(np.arange(6), 4))
    assert list(traj.obs["Hours"][:4]) == [0.0, 24.0, 48.0, 72.0] and not traj.obs["observed"].any()
    states, observed = model.sample_states(8, context="observed", query=1, n_steps=4, seed=3)
    np.testing.assert_array_equal(observed[0], [True, False, True, True])
    context = model.chain(8, seed=3, skip=1)
    np.testing.assert_array_equal(states[:, [0, 2, 3]], context[:, [0, 2, 3]])  # observed steps reproduced exactly
    # every observed step is a real train cell of its time point
    for k, level in ((0, 0), (2, 1), (3, 2)):
        real = model.train_states[model.train_codes == level]
        assert all((np.abs(real - s).max(1) == 0).any() for s in states[:, k])


def test_save_load_round_trip(hsmm_loo, tmp_path):
    model, train, _ = hsmm_loo
    model.save(tmp_path / "m")
    loaded = TrajectoryFlow.load(tmp_path / "m", adata=train)
    a = model.predict(24, n_cells=10, n_steps=4, seed=1).X.toarray()
    b = loaded.predict(24, n_cells=10, n_steps=4, seed=1).X.toarray()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    with pytest.raises(ExprflowInputError, match="exists"):
        model.save(tmp_path / "m")


def test_paul15_bins_with_count_vae():
    adata = ad.read_h5ad(shared_path("paul15_pseudotime.h5ad"))[::3].copy()
    TrajectoryFlow.setup_anndata(adata, time_key="pseudotime_lineage1", weight_key="weight_lineage1")
    model = TrajectoryFlow(adata, n_bins=4, **SMALL)
    model.train(max_steps=10, vae_steps=10, batch_size=32, progress_bar=False)
    assert model.representation_name == "count_vae" and model.time_labels == ["bin0", "bin1", "bin2", "bin3"]
    assert set(model.history) == {"vae", "flow"}
    pred = model.predict("bin2", n_cells=12, n_steps=2)
    by_time = model.predict(float(model.time_grid[2]) + 1e-3, n_cells=12, n_steps=2)  # numeric: nearest bin
    assert by_time.uns["exprflow"]["grid_steps"] == ["bin2", "bin2"] and (by_time.obs["time_label"] == "bin2").all()
    counts = pred.X.toarray()
    assert pred.shape == (12, adata.n_vars) and np.array_equal(counts, np.round(counts)) and (counts >= 0).all()
    traj = model.generate_trajectories(3, n_steps=2)
    assert traj.n_obs == 12 and traj.obs["time_label"].tolist()[:4] == ["bin0", "bin1", "bin2", "bin3"]


def test_constructor_errors(hsmm):
    with pytest.raises(ExprflowInputError, match="time_key"):
        TrajectoryFlow(hsmm)
    with pytest.raises(ExprflowInputError, match="condition"):
        TrajectoryFlow(hsmm, time_key="Hours", condition_key="Media")
    with pytest.raises(ExprflowInputError, match="no option"):
        TrajectoryFlow(hsmm, time_key="Hours", backbone_kwargs={"patch_size": 4})
    with pytest.raises(ExprflowInputError, match="count"):
        TrajectoryFlow(hsmm, time_key="Hours", representation="count_vae")
    assert MODELS.get("trajectory") is TrajectoryFlow


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_cli_fit_predict_generate_and_missing_key(hsmm, tmp_path):
    path = tmp_path / "hsmm.h5ad"
    hsmm[:, :100].copy().write_h5ad(path)
    r = run("fit", "--data", path, "--model", "trajectory", "--time-key", "Hours", "--max-steps", 5,
            "--batch-size", 16, "--backbone", "transformer", "--backbone-kwargs", '{"width": 16, "depth": 1}',
            "--model-kwargs", '{"n_latent": 4, "n_sequences": 64}', "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    r = run("trajectory", "predict", tmp_path / "run", "--time", 48, "--n-cells", 7, "--n-steps", 2,
            "--out", tmp_path / "p.h5ad")
    assert r.exit_code == 0, r.output
    assert ad.read_h5ad(tmp_path / "p.h5ad").n_obs == 7
    r = run("trajectory", "generate", tmp_path / "run", "--n", 5, "--n-steps", 2, "--out", tmp_path / "g.h5ad",
            "--plot", tmp_path / "g.png", "--data", path)
    assert r.exit_code == 0, r.output
    assert ad.read_h5ad(tmp_path / "g.h5ad").n_obs == 20 and (tmp_path / "g.png").stat().st_size > 0
    r = run("generate", tmp_path / "run", "--n-cells", 6, "--n-steps", 2, "--out", tmp_path / "any.h5ad")
    assert r.exit_code == 0, r.output  # the generic command: cells of whole trajectories, times in obs
    assert list(ad.read_h5ad(tmp_path / "any.h5ad").obs["Hours"]) == [0.0, 24.0, 48.0, 72.0, 0.0, 24.0]
    r = CliRunner().invoke(cli, ["fit", "--data", str(path), "--model", "trajectory", "--time-key", "Day",
                                 "--out", str(tmp_path / "bad")])
    assert r.exit_code == 2 and "Day" in r.output and "Traceback" not in r.output
