"""Budgets mean one thing in every model (exprflow.training.options), renamed options keep their old
spelling for a release, and nested options keep the defaults they leave out."""

import warnings

import pytest

from exprflow.errors import ExprflowInputError
from exprflow.models import LatentFlow, StateFlow, TrajectoryFlow
from exprflow.training.options import PhaseBudget, TrainerOptions, resolve_budgets

DEFAULTS = {"vae_steps": lambda batch: 1000 // batch, "flow_steps": 400, "batch_size": 100, "flow_batch_size": 50}


def budgets(phases=("vae", "flow"), **kw):
    args = dict(max_epochs=None, max_steps=None, batch_size=None, flow_batch_size=None, vae_steps=None,
                flow_steps=None)
    return resolve_budgets(phases, **{**args, **kw}, defaults=DEFAULTS, model="M")


def test_defaults_named_budgets_and_the_general_budget():
    assert budgets() == {"vae": PhaseBudget(10, None, 100), "flow": PhaseBudget(400, None, 50)}
    assert budgets(batch_size=20)["vae"] == PhaseBudget(50, None, 20)  # the VAE default follows its batch
    assert budgets(vae_steps=7, flow_steps=9) == {"vae": PhaseBudget(7, None, 100), "flow": PhaseBudget(9, None, 50)}
    with pytest.warns(FutureWarning, match="every phase not given by name"):
        general = budgets(max_epochs=3)  # scvi-tools style: short in every phase
    assert general == {"vae": PhaseBudget(None, 3, 100), "flow": PhaseBudget(None, 3, 50)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # both phases named: nothing to warn about
        assert budgets(max_steps=5, vae_steps=7, flow_steps=9)["flow"].max_steps == 9
    one = budgets(("flow",), max_steps=5, flow_batch_size=8)
    assert one == {"flow": PhaseBudget(5, None, 8)}


def test_bad_budgets_are_clear_errors():
    with pytest.raises(ExprflowInputError, match="no VAE phase: vae_steps"):
        budgets(("flow",), vae_steps=3)
    with pytest.raises(ExprflowInputError, match="max_steps must be a non-negative integer"):
        budgets(max_steps=-1)
    with pytest.raises(ExprflowInputError, match="flow_batch_size must be a positive integer"):
        budgets(flow_batch_size=0)


def test_trainer_options_name_one_checkpoint_per_phase():
    opts = TrainerOptions(checkpoint_dir="/ckpt", seed=3)
    assert opts.fit_kwargs("vae")["checkpoint_path"] == "/ckpt/vae.ckpt"
    assert opts.fit_kwargs("flow")["seed"] == 3 and "checkpoint_dir" not in opts.fit_kwargs("flow")
    assert TrainerOptions().fit_kwargs("flow")["checkpoint_path"] is None


def test_each_phase_trains_its_own_budget(counts_adata):
    model = LatentFlow(counts_adata, condition_key="cell_type", vae={"n_hidden": 16, "n_latent": 3},
                       backbone_kwargs={"hidden": 16, "depth": 1})
    model.train(vae_steps=7, flow_steps=5, batch_size=32, flow_batch_size=16, progress_bar=False)
    assert len(model.history["vae"]) == 7 and len(model.history["flow"]) == 5
    state = StateFlow(counts_adata, backbone_kwargs={"hidden": 16, "depth": 1})
    state.train(flow_steps=4, batch_size=32, progress_bar=False)
    assert len(state.history["flow"]) == 4
    with pytest.raises(ExprflowInputError, match="StateFlow has no VAE phase"):
        state.train(vae_steps=3)


def test_renamed_options_warn_and_keep_working(counts_adata):
    with pytest.warns(DeprecationWarning, match="'optim' is now flow_optim"):
        model = StateFlow(counts_adata, optim={"lr": 5e-4})
    assert model.config.flow_optim.lr == 5e-4
    adata = counts_adata.copy()
    adata.obs["day"] = adata.obs["cell_type"].cat.codes.astype(float)
    with pytest.warns(DeprecationWarning, match="'n_latent' is now vae="):
        traj = TrajectoryFlow(adata, time_key="day", n_latent=4, likelihood="zinb", p_uncond=0.3)
    assert (traj.config.vae.n_latent, traj.config.vae.likelihood, traj.config.cond_dropout) == (4, "zinb", 0.3)


def test_a_partial_nested_option_keeps_the_fields_it_leaves_out(counts_adata):
    model = LatentFlow(counts_adata, vae_optim={"lr": 1e-4})
    assert model.config.vae_optim.lr == 1e-4
    assert model.config.vae_optim.weight_decay == LatentFlow.config_cls().vae_optim.weight_decay == 1e-6
