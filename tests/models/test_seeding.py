"""train(seed=s) of a fresh model is a function of s alone: not of the global random state before it.

Models build their networks when constructed; ``train`` builds them again from its seed
(:mod:`exprflow.training.seeding`) and leaves the caller's torch, NumPy and Python generators as they were.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from synthetic import make_counts_adata, make_perturbation_arms

from exprflow.models import MODELS

_GENE_SETS = {f"set{k}": [f"gene{j}" for j in range(k, 30, 4)] for k in range(4)}  # genes of the data below

#: name -> (constructor options, train options): tiny budgets, the point is the initial weights
TINY = {
    "state": ({"condition_key": "cell_type", "backbone_kwargs": {"hidden": 32, "depth": 2}},
              {"max_steps": 5, "batch_size": 32}),
    "latent": ({"condition_key": "cell_type", "backbone_kwargs": {"hidden": 32, "depth": 2},
                "vae": {"n_hidden": 32, "n_latent": 3}},
               {"max_steps": 5, "batch_size": 32, "flow_steps": 5}),
    "pathway": ({"condition_key": "cell_type",  # gene-aware: setup_genes runs on every build
                 "backbone_kwargs": {"gene_sets": _GENE_SETS, "min_set_size": 2, "hidden": 16, "depth": 1,
                                     "heads": 2, "time_dim": 16}},
                {"max_steps": 3, "batch_size": 32}),
    "population": ({"condition_key": "cell_type", "backbone_kwargs": {"width": 16, "depth": 1, "n_heads": 2},
                    "vae": {"n_hidden": 32, "n_latent": 3}, "population_size": 8, "replace": True},
                   {"max_steps": 3, "batch_size": 32, "flow_steps": 3, "flow_batch_size": 4}),
    "trajectory": ({"time_key": "day", "n_latent": 3, "n_sequences": 32, "backbone_kwargs": {"width": 16, "depth": 1}},
                   {"max_steps": 3, "vae_steps": 3, "batch_size": 16}),
    "perturbation": ({"condition_key": "condition", "control_group": "ctrl", "vae": {"n_hidden": 32, "n_latent": 3},
                      "backbone_kwargs": {"hidden": 32, "depth": 2}},
                     {"max_steps": 3, "flow_steps": 3, "flow_batch_size": 32, "batch_size": 32}),
}


def _data(name: str):
    if name == "perturbation":
        return make_perturbation_arms()[0]
    adata = make_counts_adata(n_cells=120, n_genes=30, seed=1)
    adata.obs["day"] = adata.obs["cell_type"].map({"type0": 0, "type1": 1, "type2": 2}).astype(float)
    return adata


def _weights(model) -> dict[str, torch.Tensor]:
    nets = {"backbone": model.backbone, "vae": getattr(model, "vae", None),
            "encoder": getattr(getattr(model, "encoder", None), "vae", None)}
    return {f"{n}.{k}": v.detach().clone() for n, net in nets.items() if net is not None
            for k, v in net.state_dict().items()}


def _rng_state():
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


def _same_rng_state(a, b) -> bool:
    return torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def _train_after(name: str, adata, global_seed: int, seed: int):
    """A model built after seeding the global generators with ``global_seed``, trained with ``seed``;
    also whether ``train`` left the global random state as it found it."""
    config, train_kw = TINY[name]
    torch.manual_seed(global_seed), np.random.seed(global_seed), random.seed(global_seed)
    model = MODELS.get(name)(adata, **config)
    torch.rand(7)  # the caller draws in between
    before = _rng_state()
    model.train(seed=seed, progress_bar=False, **train_kw)
    return model, _same_rng_state(before, _rng_state())


@pytest.mark.parametrize("name", sorted(TINY))
def test_training_ignores_the_global_random_state_and_keeps_it(name):
    adata = _data(name)
    a, kept_a = _train_after(name, adata, global_seed=11, seed=2)
    b, kept_b = _train_after(name, adata, global_seed=12, seed=2)
    assert kept_a and kept_b
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and len(wa)
    assert all(torch.equal(wa[k], wb[k]) for k in wa), [k for k in wa if not torch.equal(wa[k], wb[k])]
    if name in ("state", "latent"):
        ga, gb = a.generate(n_cells=25, seed=3), b.generate(n_cells=25, seed=3)
        assert (ga.X != gb.X).nnz == 0 and ga.X.sum() > 0
        assert list(ga.obs["cell_type"]) == list(gb.obs["cell_type"])
    c, _ = _train_after(name, adata, global_seed=11, seed=5)  # another seed: other weights
    wc = _weights(c)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa if wa[k].is_floating_point())


@pytest.mark.parametrize("name", ["state", "latent"])
def test_train_initialises_the_networks_from_its_seed(name):
    """With a learning rate of 0 the trained weights are the initial ones: those built after
    ``torch.manual_seed(seed)`` (what ``exprflow fit`` did before building, so its results are unchanged)."""
    config, train_kw = TINY[name]
    frozen = {"optim": {"lr": 0.0}} if name == "state" else {"vae_optim": {"lr": 0.0}, "flow_optim": {"lr": 0.0}}
    model = MODELS.get(name)(_data(name), **config, **frozen)
    model.train(seed=4, progress_bar=False, **train_kw)
    trained = _weights(model)
    torch.manual_seed(4)
    model._build_networks(model.n_conditions)
    initial = _weights(model)
    assert all(torch.equal(trained[k], initial[k]) for k in initial)


def test_a_trained_model_continues_from_its_weights():
    """A second train() call is more training (not a fresh start), as before."""
    adata = _data("state")
    once, _ = _train_after("state", adata, global_seed=0, seed=2)
    twice, _ = _train_after("state", adata, global_seed=0, seed=2)
    twice.train(seed=2, progress_bar=False, **TINY["state"][1])
    w1, w2 = _weights(once), _weights(twice)
    assert any(not torch.equal(w1[k], w2[k]) for k in w1 if w1[k].is_floating_point())


def test_train_flow_alone_keeps_the_vae_and_the_callers_random_state():
    """PopulationFlow.train_flow trains the flow on the VAE the user set: nothing is initialised again."""
    config, _ = TINY["population"]
    model = MODELS.get("population")(_data("population"), **config)
    with torch.no_grad():
        for p in model.vae.parameters():
            p.fill_(0.01)
    vae = _weights(model)
    torch.rand(3)
    before = _rng_state()
    model.train_flow(flow_steps=3, flow_batch_size=4, seed=1, progress_bar=False)
    assert _same_rng_state(before, _rng_state())
    after = _weights(model)
    assert all(torch.equal(vae[k], after[k]) for k in vae if k.startswith("vae."))
