"""The contract every registered model keeps: setup_anndata / train / generate / save / load.

Parametrised over ``MODELS``, so a new model is held to the same behaviour as soon as it registers
(with a small configuration in ``SMALL`` below).
"""

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from exprflow.errors import ExprflowInputError
from exprflow.models import MODELS

_GENE_SETS = {f"set{k}": [f"gene{j}" for j in range(k, 40, 4)] for k in range(4)}  # the synthetic genes

SMALL = {
    "state": ({"backbone_kwargs": {"hidden": 64, "depth": 2}}, {"max_steps": 150, "batch_size": 64}),
    "latent": (
        {"backbone_kwargs": {"hidden": 64, "depth": 2}, "vae": {"n_hidden": 32, "n_latent": 4}},
        {"max_steps": 150, "batch_size": 64, "flow_steps": 150},
    ),
    "pathway": (
        {"backbone_kwargs": {"gene_sets": _GENE_SETS, "min_set_size": 2, "hidden": 16, "depth": 1, "heads": 2,
                             "time_dim": 16}},
        {"max_steps": 60, "batch_size": 64},
    ),
    "population": (
        {"backbone_kwargs": {"width": 32, "depth": 1, "n_heads": 2}, "vae": {"n_hidden": 32, "n_latent": 4},
         "population_size": 8, "replace": True},
        {"max_steps": 60, "batch_size": 64, "flow_steps": 60},
    ),
}

#: models whose contract is not "cells conditioned on a label": they keep their own test files
OWN_CONTRACT = {
    "trajectory": "needs a time key; tests/models/test_trajectory_flow.py",
    "perturbation": "maps control cells to perturbed cells; tests/models/test_perturbation_flow.py",
}


def test_every_model_has_a_small_config_or_its_own_contract():
    assert sorted([*SMALL, *OWN_CONTRACT]) == MODELS.names()
    assert not set(SMALL) & set(OWN_CONTRACT)


@pytest.fixture(scope="module", params=sorted(SMALL))
def trained(request):
    from synthetic import make_counts_adata

    name = request.param
    config, train_kw = SMALL[name]
    adata = make_counts_adata(n_cells=200, n_genes=40, seed=3)
    model = MODELS.get(name)(adata, condition_key="cell_type", **config)
    model.train(progress_bar=False, **train_kw)
    return name, adata, model


def test_generate_returns_scverse_anndata(trained):
    _, adata, model = trained
    out = model.generate(conditions={"type0": 30, "type2": 20}, n_steps=8, seed=1)
    assert out.n_obs == 50 and list(out.var_names) == list(adata.var_names)
    assert sp.issparse(out.X) and np.issubdtype(out.X.dtype, np.integer)
    assert out.X.min() >= 0
    counts = out.obs["cell_type"].value_counts()
    assert counts[counts > 0].to_dict() == {"type0": 30, "type2": 20}
    assert (out.obs["source"] == "generated").all()
    prov = out.uns["exprflow"]
    assert prov["model"] == type(model).__name__ and prov["nfe"] == 8 and prov["n_steps"] == 8


def test_generation_is_deterministic_for_a_seed(trained):
    _, _, model = trained
    a = model.generate(n_cells=20, n_steps=4, seed=5)
    b = model.generate(n_cells=20, n_steps=4, seed=5)
    c = model.generate(n_cells=20, n_steps=4, seed=6)
    assert (a.X != b.X).nnz == 0
    assert (a.X != c.X).nnz > 0


def test_unknown_condition_is_a_clear_error(trained):
    _, _, model = trained
    with pytest.raises(ExprflowInputError, match="type0"):
        model.generate(conditions={"no_such_type": 3})


def test_save_load_roundtrip(trained, tmp_path):
    _, adata, model = trained
    model.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["var_names"] == list(adata.var_names) and cfg["model"] == type(model).__name__
    weights = torch.load(tmp_path / "m" / "weights.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in weights.values())
    loaded = type(model).load(tmp_path / "m", adata=adata)
    a = model.generate(n_cells=15, n_steps=4, seed=9)
    b = loaded.generate(n_cells=15, n_steps=4, seed=9)
    assert (a.X != b.X).nnz == 0
    with pytest.raises(ExprflowInputError, match="exists"):
        model.save(tmp_path / "m")
    model.save(tmp_path / "m", overwrite=True)


def test_load_checks_genes_and_model_kind(trained, tmp_path):
    name, adata, model = trained
    model.save(tmp_path / "m2")
    with pytest.raises(ExprflowInputError, match="genes do not match"):
        type(model).load(tmp_path / "m2", adata=adata[:, :30].copy())
    other = MODELS.get(next(n for n in MODELS.names() if n != name))
    with pytest.raises(ExprflowInputError, match=f"not a {other.__name__}"):
        other.load(tmp_path / "m2")


def test_pickled_code_in_weights_is_refused(trained, tmp_path):
    _, _, model = trained
    model.save(tmp_path / "m3")

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    torch.save({"x": Evil()}, tmp_path / "m3" / "weights.pt")
    with pytest.raises(ExprflowInputError, match="pickled code"):
        type(model).load(tmp_path / "m3")


@pytest.mark.parametrize("damage", ["truncate_weights", "truncate_config", "drop_weights"])
def test_partial_or_corrupted_model_directory_is_a_clear_error(trained, tmp_path, damage):
    _, _, model = trained
    model.save(tmp_path / "m4")
    weights, config = tmp_path / "m4" / "weights.pt", tmp_path / "m4" / "config.json"
    if damage == "truncate_weights":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "truncate_config":
        config.write_text(config.read_text()[:50])
    else:
        weights.unlink()
    with pytest.raises(ExprflowInputError, match="corrupted|not an exprflow model directory"):
        type(model).load(tmp_path / "m4")


@pytest.mark.parametrize("name", sorted(SMALL))
def test_user_anndata_is_not_modified(counts_adata, name):
    cls = MODELS.get(name)
    cls.setup_anndata(counts_adata, condition_key="cell_type")  # the one writer: uns["_exprflow_setup"]
    before = counts_adata.copy()
    model = cls(counts_adata, **SMALL[name][0])
    train_kw = {**SMALL[name][1], "max_steps": 3, "batch_size": 32}
    if "flow_steps" in train_kw:
        train_kw["flow_steps"] = 3
    model.train(progress_bar=False, **train_kw)
    assert (counts_adata.X != before.X).nnz == 0
    assert counts_adata.obs.equals(before.obs) and counts_adata.uns.keys() == before.uns.keys()
    assert counts_adata.uns["_exprflow_setup"] == before.uns["_exprflow_setup"]
    assert model.setup.condition_key == "cell_type"  # stored by setup_anndata


@pytest.mark.parametrize("name", sorted(SMALL))
def test_generate_before_train_is_an_error(counts_adata, name):
    with pytest.raises(ExprflowInputError, match="not trained"):
        MODELS.get(name)(counts_adata, **SMALL[name][0]).generate(n_cells=3)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_unknown_option_is_an_error(counts_adata, name):
    cls = MODELS.get(name)
    with pytest.raises(ExprflowInputError, match=f"Unknown {cls.__name__} option"):
        cls(counts_adata, hidden_size=3)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_non_integer_counts_rejected(counts_adata, name):
    bad = counts_adata.copy()
    bad.X = bad.X.astype(np.float32)
    bad.X.data = bad.X.data * 0.5 + 0.25
    with pytest.raises(ExprflowInputError, match="integer"):
        MODELS.get(name)(bad)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_training_is_deterministic_on_cpu_for_a_seed(name):
    """Same data, config and seed: the same weights after training (init and batches both seeded)."""
    from synthetic import make_counts_adata

    config, train_kw = SMALL[name]
    adata = make_counts_adata(n_cells=120, n_genes=30, seed=4)
    short = {**train_kw, **{k: 20 for k in ("max_steps", "flow_steps") if k in train_kw}}

    def weights(seed):
        torch.manual_seed(seed)
        model = MODELS.get(name)(adata, condition_key="cell_type", **config)
        model.train(progress_bar=False, seed=seed, **short)
        return {k: v.clone() for k, v in model._tensors().items()}

    a, b, c = weights(0), weights(0), weights(1)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())
