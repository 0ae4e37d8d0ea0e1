"""Reflow (Liu et al. 2022): the retrained flow follows its teacher's couplings in one Euler step much
better than the teacher itself, generate then defaults to one step, and the choice survives save/load."""

import numpy as np
import pytest
import torch
from synthetic import make_counts_adata

from exprflow.errors import ExprflowInputError
from exprflow.models import LatentFlow
from exprflow.models.base import DEFAULT_SAMPLER
from exprflow.training.reflow import teacher_pairs

SMALL = {"backbone_kwargs": {"hidden": 64, "depth": 2}, "vae": {"n_hidden": 64, "n_latent": 4}}


def _one_step_error(model, x0, x1, codes) -> float:
    gen = torch.Generator().manual_seed(0)
    errors = []
    for code in np.unique(codes):
        rows = np.flatnonzero(codes == code)
        x, _ = model.sample_states(codes[rows], len(rows), n_steps=1, solver="euler", guidance=1.0, generator=gen,
                                   x0=torch.from_numpy(x0[rows]))
        errors.append(((x.numpy() - x1[rows]) ** 2).sum(1))
    return float(np.concatenate(errors).mean())


@pytest.fixture(scope="module")
def trained():
    adata = make_counts_adata(n_cells=300, n_genes=40, seed=4)
    model = LatentFlow(adata, condition_key="cell_type", **SMALL)
    model.train(max_steps=300, batch_size=64, flow_steps=400, progress_bar=False)
    return model


@pytest.mark.slow
def test_reflow_straightens_the_flow_and_changes_the_default_sampler(trained, tmp_path):
    model = trained
    assert model.default_sampler == DEFAULT_SAMPLER == {"solver": "heun", "n_steps": 4}
    x0, x1, codes = teacher_pairs(model, 600, n_steps=8, solver="heun", seed=5)  # pairs not used in training
    before = _one_step_error(model, x0, x1, codes)
    model.reflow(n_pairs=3000, steps=400, progress_bar=False)
    after = _one_step_error(model, x0, x1, codes)
    assert after < 0.5 * before, (before, after)
    assert model.default_sampler == {"solver": "euler", "n_steps": 1}
    gen = model.generate(n_cells=50, seed=1)
    assert gen.uns["exprflow"]["nfe"] == 1 and gen.n_obs == 50
    model.save(str(tmp_path / "m"))
    loaded = LatentFlow.load(str(tmp_path / "m"))
    assert loaded.default_sampler == {"solver": "euler", "n_steps": 1}
    a = loaded.generate(n_cells=40, seed=3, n_steps=1)
    b = model.generate(n_cells=40, seed=3, n_steps=1)
    assert (a.X != b.X).nnz == 0  # the reflowed (EMA) weights are the ones saved


def test_reflow_refuses_bad_arguments_and_untrained_models():
    model = LatentFlow(make_counts_adata(n_cells=60, n_genes=10, seed=1), **SMALL)
    with pytest.raises(ExprflowInputError, match="n_pairs"):
        model.reflow(n_pairs=1, steps=10)
    with pytest.raises(ExprflowInputError, match="trained"):
        model.reflow(n_pairs=100, steps=10)


def test_a_reflowed_model_saves_its_reflow_loss_table(tmp_path):
    model = LatentFlow(make_counts_adata(n_cells=80, n_genes=12, seed=2), **SMALL)
    model.train(vae_steps=3, flow_steps=3, batch_size=32, progress_bar=False)
    model.reflow(n_pairs=64, steps=3, progress_bar=False)
    assert len(model.history["reflow"]) == 3 and "loss" in model.history["reflow"].columns
    model.save(str(tmp_path / "m"))
    assert len(LatentFlow.load(str(tmp_path / "m")).history["reflow"]) == 3
