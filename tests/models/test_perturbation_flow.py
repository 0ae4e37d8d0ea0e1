"""PerturbationFlow on a kang2018_ifnb_small_labeled subsample (held-out cell type), baselines, CLI."""

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from click.testing import CliRunner
from shared_data import shared_path
from synthetic import make_perturbation_arms

from exprflow.backbones.sequence import MIXERS
from exprflow.cli import cli
from exprflow.errors import ExprflowInputError
from exprflow.metrics.reference import normalise_rows
from exprflow.models import MODELS, PerturbationFlow
from exprflow.models.perturbation_baselines import LatentArithmetic, MeanShift, identity_prediction

HELD_OUT = "B cells"
SMALL = {"vae": {"n_hidden": 32, "n_latent": 4}, "backbone_kwargs": {"hidden": 32, "depth": 2}}
TRAIN = {"max_steps": 20, "flow_steps": 20, "flow_batch_size": 64, "batch_size": 64, "progress_bar": False}


@pytest.fixture(scope="module")
def kang_small():
    """400 cells x 300 genes of kang-small (both arms, 5 cell types)."""
    adata = ad.read_h5ad(shared_path("kang2018_ifnb_small_labeled.h5ad"))
    rng = np.random.default_rng(0)
    return adata[np.sort(rng.choice(adata.n_obs, 400, replace=False)), :300].copy()


@pytest.fixture(scope="module")
def held_out(kang_small):
    """Training cells (held-out type's control cells only) and the held-out type's control cells."""
    obs = kang_small.obs
    is_type = (obs["cell_type"] == HELD_OUT).to_numpy()
    is_ctrl = (obs["condition"] == "ctrl").to_numpy()
    return kang_small[~(is_type & ~is_ctrl)].copy(), kang_small[is_type & is_ctrl].copy()


@pytest.fixture(scope="module")
def trained(held_out):
    train, _ = held_out
    before = (train.X.copy(), train.obs.copy(), dict(train.uns))
    model = PerturbationFlow(train, condition_key="condition", control_group="ctrl", cell_type_key="cell_type", **SMALL)
    model.train(seed=0, **TRAIN)
    assert (train.X != before[0]).nnz == 0 and train.obs.equals(before[1]) and train.uns == before[2]
    return model


def test_predict_held_out_type(trained, held_out):
    _, ctrl = held_out
    before = ctrl.X.copy()
    pred = trained.predict(ctrl, condition="stim", seed=0)
    assert list(pred.var_names) == list(ctrl.var_names) and pred.n_obs == ctrl.n_obs
    assert sp.issparse(pred.X) and np.issubdtype(pred.X.dtype, np.integer) and pred.X.min() >= 0
    assert (pred.obs["condition"] == "stim").all() and (pred.obs["cell_type"] == HELD_OUT).all()
    assert list(pred.obs["control_cell"]) == list(ctrl.obs_names)
    assert (ctrl.X != before).nnz == 0 and "exprflow" not in ctrl.uns
    assert pred.uns["exprflow"]["nfe"] == 16
    means = trained.predict(ctrl, decode="mean")  # the only perturbation is the default
    assert np.issubdtype(means.X.dtype, np.floating)


def test_save_load_round_trip_gives_identical_predictions(trained, held_out, tmp_path):
    _, ctrl = held_out
    trained.save(tmp_path / "m")
    loaded = PerturbationFlow.load(tmp_path / "m", adata=ctrl)
    a, b = trained.predict(ctrl, seed=3), loaded.predict(ctrl, seed=3)
    assert (a.X != b.X).nnz == 0
    assert (a.X != trained.predict(ctrl, seed=4).X).nnz > 0


def test_predict_errors(trained, held_out, kang_small):
    _, ctrl = held_out
    with pytest.raises(ExprflowInputError, match="Unknown perturbation"):
        trained.predict(ctrl, condition="nope")
    with pytest.raises(ExprflowInputError, match="not 'condition' == 'ctrl'"):
        trained.predict(kang_small, condition="stim")
    with pytest.raises(ExprflowInputError, match="genes"):
        trained.predict(ctrl[:, :50].copy(), condition="stim")
    with pytest.raises(ExprflowInputError, match="predict"):
        trained.generate(n_cells=5)


def test_sequence_backbones_train_and_predict(held_out, trained):
    train, ctrl = held_out
    for backbone, mixer in (("s4d", "s4d"), ("transformer", "attention")):
        model = PerturbationFlow(train, condition_key="condition", control_group="ctrl", backbone=backbone,
                                 backbone_kwargs={"width": 16, "depth": 1}, vae=SMALL["vae"])
        model.train(seed=0, pretrained_vae=trained, **TRAIN)  # the VAE is copied, not trained again
        assert isinstance(model.backbone.stack.blocks[0].mixer, MIXERS.get(mixer))
        assert all(torch.equal(a, b) for a, b in zip(model.vae.state_dict().values(), trained.vae.state_dict().values()))
        assert model.predict(ctrl).n_obs == ctrl.n_obs
    with pytest.raises(ExprflowInputError, match="only defined for backbone='mlp'"):
        PerturbationFlow(train, condition_key="condition", control_group="ctrl", backbone="s4d", source_token=False)


def test_identity_and_mean_shift_baselines_exact():
    both, ctrl = make_perturbation_arms()
    assert (identity_prediction(ctrl) != ctrl.X).nnz == 0
    shift = MeanShift().fit(both, condition_key="condition", control_group="ctrl", cell_type_key="cell_type")
    y = normalise_rows(both.X).toarray()
    is_stim = (both.obs["condition"] == "stim").to_numpy()
    types = both.obs["cell_type"].to_numpy()
    per_type = [y[is_stim & (types == t)].mean(0) - y[~is_stim & (types == t)].mean(0) for t in ("type0", "type1")]
    assert np.allclose(shift.delta[0], np.mean(per_type, axis=0))  # cell types weighted equally
    pred = shift.predict_normalised(ctrl, "stim")
    assert np.allclose(pred, np.maximum(normalise_rows(ctrl.X).toarray() + shift.delta[0], 0))
    counts = shift.predict(ctrl, "stim", seed=0)
    assert np.issubdtype(counts.dtype, np.integer) and counts.shape == ctrl.shape


def test_latent_arithmetic_is_the_balanced_latent_shift(trained, held_out):
    _, ctrl = held_out
    baseline = LatentArithmetic().fit(trained)
    states = trained.training_states()
    d = trained.pdata
    stim, types = ~d.is_control, d.cell_types
    paired = [t for t in np.unique(types) if (stim & (types == t)).any() and (~stim & (types == t)).any()]
    expected = np.mean([states[stim & (types == t)].mean(0) for t in paired], 0) - np.mean(
        [states[~stim & (types == t)].mean(0) for t in paired], 0)
    assert np.allclose(baseline.delta[0], expected, atol=1e-5)
    pred = baseline.predict(ctrl, "stim")
    assert pred.shape == ctrl.shape and np.issubdtype(pred.dtype, np.integer)


def test_registered_for_the_cli():
    assert MODELS.get("perturbation") is PerturbationFlow


def test_cli_fit_predict(held_out, tmp_path):
    train, ctrl = held_out
    train.write_h5ad(tmp_path / "train.h5ad")
    ctrl.write_h5ad(tmp_path / "ctrl.h5ad")
    runner = CliRunner()
    fit = ["fit", "--data", tmp_path / "train.h5ad", "--model", "perturbation", "--condition-key", "condition",
           "--max-steps", "10", "--batch-size", "64", "--seed", "1", "--out", tmp_path / "run"]
    kwargs = '{"cell_type_key": "cell_type", "flow_steps": 10, "flow_batch_size": 64, "vae": {"n_hidden": 32}}'
    r = runner.invoke(cli, [str(a) for a in fit + ["--control-group", "ctrl", "--model-kwargs", kwargs]])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["predict", str(tmp_path / "run"), "--data", str(tmp_path / "ctrl.h5ad"),
                            "--condition", "stim", "--out", str(tmp_path / "pred.h5ad")])
    assert r.exit_code == 0, r.output
    pred = ad.read_h5ad(tmp_path / "pred.h5ad")
    assert pred.n_obs == ctrl.n_obs and list(pred.var_names) == list(ctrl.var_names)
    r = runner.invoke(cli, [str(a) for a in fit + ["--control-group", "control", "--out", tmp_path / "run2"]])
    assert r.exit_code == 2 and "not a level" in r.output and "Traceback" not in r.output
    r = runner.invoke(cli, ["predict", str(tmp_path / "run"), "--data", str(tmp_path / "train.h5ad"),
                            "--out", str(tmp_path / "p2.h5ad")])
    assert r.exit_code == 2 and "control cells" in r.output


def test_residual_decode_is_the_control_cell_plus_the_decoded_shift(trained, held_out):
    _, ctrl = held_out
    pred = trained.predict(ctrl, condition="stim", seed=0, decode="residual")
    assert np.issubdtype(pred.X.dtype, np.integer) and pred.uns["exprflow"]["decode"] == "residual"
    states, _ = trained.encode_states(ctrl)
    moved = trained.transport(states, "stim")
    shift = normalise_rows(trained.decode_states(moved, sample=False)) - normalise_rows(
        trained.decode_states(states, sample=False))
    expected = np.maximum(normalise_rows(ctrl.X).toarray() + shift, 0)
    library = np.asarray(ctrl.X.sum(axis=1)).ravel()
    # stochastic rounding keeps the expectation: compare per-gene means of counts
    want = (np.expm1(expected) * library[:, None] / 1e4).mean(0)
    got = np.asarray(pred.X.mean(axis=0)).ravel()
    assert np.abs(got - want).max() < 0.1 * max(want.max(), 1)
    with pytest.raises(ExprflowInputError, match="decode must be one of"):
        trained.predict(ctrl, condition="stim", decode="median")


def test_latent_arithmetic_from_a_loaded_model_needs_and_uses_the_training_cells(trained, held_out, tmp_path):
    train, ctrl = held_out
    trained.save(tmp_path / "run")
    loaded = PerturbationFlow.load(tmp_path / "run")
    with pytest.raises(ExprflowInputError, match="training cells"):
        LatentArithmetic.from_model(loaded)
    again = LatentArithmetic.from_model(loaded, train)
    assert np.allclose(again.delta, LatentArithmetic.from_model(trained).delta, atol=1e-4)
    out = again.predict_adata(ctrl, "stim")
    assert out.uns["exprflow"]["model"] == "latent_arithmetic" and out.n_obs == ctrl.n_obs


def test_cli_predict_baselines(trained, held_out, tmp_path):
    train, ctrl = held_out
    train.write_h5ad(tmp_path / "train.h5ad")
    ctrl.write_h5ad(tmp_path / "ctrl.h5ad")
    trained.save(tmp_path / "run")
    runner = CliRunner()
    base = ["predict", "--data", str(tmp_path / "ctrl.h5ad"), "--train", str(tmp_path / "train.h5ad")]
    r = runner.invoke(cli, base + ["--baseline", "ridge", "--condition-key", "condition", "--control-group", "ctrl",
                                   "--cell-type-key", "cell_type", "--out", str(tmp_path / "ridge.h5ad")])
    assert r.exit_code == 0, r.output
    pred = ad.read_h5ad(tmp_path / "ridge.h5ad")
    assert pred.n_obs == ctrl.n_obs and pred.uns["exprflow"]["model"] == "ridge"
    r = runner.invoke(cli, [base[0], str(tmp_path / "run")] + base[1:] + ["--baseline", "latent_arithmetic",
                                                                          "--out", str(tmp_path / "la.h5ad")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, base + ["--baseline", "mean_shift", "--out", str(tmp_path / "x.h5ad")])
    assert r.exit_code == 2 and "--condition-key" in r.output and "Traceback" not in r.output
    r = runner.invoke(cli, base + ["--baseline", "latent_arithmetic", "--out", str(tmp_path / "x.h5ad")])
    assert r.exit_code == 2 and "RUN" in r.output
