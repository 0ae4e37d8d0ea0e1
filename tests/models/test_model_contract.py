"""The contract every registered model keeps: setup_anndata / train / generate / save / load.

Parametrised over ``MODELS`` with no exemption: each model has a small configuration in ``SMALL``
and, in ``CASES``, how it is built and how it samples (``generate`` for models of labelled cells,
``predict`` from control cells for ``PerturbationFlow``, whole trajectories for ``TrajectoryFlow``).
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
        {"vae_steps": 150, "batch_size": 64, "flow_steps": 150},
    ),
    "pathway": (
        {"backbone_kwargs": {"gene_sets": _GENE_SETS, "min_set_size": 2, "hidden": 16, "depth": 1, "heads": 2,
                             "time_dim": 16}},
        {"max_steps": 60, "batch_size": 64},
    ),
    "population": (
        {"backbone_kwargs": {"width": 32, "depth": 1, "n_heads": 2}, "vae": {"n_hidden": 32, "n_latent": 4},
         "population_size": 8, "replace": True},
        {"vae_steps": 60, "batch_size": 64, "flow_steps": 60},
    ),
    "perturbation": (
        {"backbone_kwargs": {"hidden": 32, "depth": 1}, "vae": {"n_hidden": 32, "n_latent": 4}},
        {"vae_steps": 60, "batch_size": 64, "flow_steps": 60, "flow_batch_size": 32},
    ),
    "trajectory": (
        {"vae": {"n_hidden": 32, "n_latent": 4}, "n_sequences": 64, "backbone_kwargs": {"width": 16, "depth": 1}},
        {"vae_steps": 60, "batch_size": 64, "flow_steps": 60, "flow_batch_size": 16},
    ),
}

#: models that generate cells by a condition label (generate(conditions=...))
LABELLED = ("state", "latent", "pathway", "population")


def _with_time(adata):
    """The synthetic cell types read as three time points (TrajectoryFlow's time key)."""
    adata = adata.copy()
    adata.obs["day"] = adata.obs["cell_type"].cat.codes.astype(float)
    return adata


def build(name, adata, **config):
    """``name``'s model on ``adata`` (cell types as its conditions, control group or time points)."""
    cls = MODELS.get(name)
    if name == "trajectory":
        return cls(_with_time(adata), time_key="day", **config)
    if name == "perturbation":
        return cls(adata, condition_key="cell_type", control_group="type0", **config)
    return cls(adata, condition_key="cell_type", **config)


def sample(name, model, adata, n, seed):
    """``n`` generated cells (the model's own way of sampling)."""
    if name == "perturbation":
        return model.predict(adata[adata.obs["cell_type"] == "type0"][:n].copy(), condition="type1", n_steps=4,
                             seed=seed)
    return model.generate(n_cells=n, n_steps=4, seed=seed)


def test_every_registered_model_has_a_small_config():
    assert sorted(SMALL) == MODELS.names()


@pytest.fixture(scope="module", params=sorted(SMALL))
def trained(request):
    from synthetic import make_counts_adata

    name = request.param
    config, train_kw = SMALL[name]
    adata = make_counts_adata(n_cells=200, n_genes=40, seed=3)
    model = build(name, adata, **config)
    model.train(progress_bar=False, **train_kw)
    return name, adata, model


@pytest.fixture(scope="module", params=LABELLED)
def labelled(request):
    from synthetic import make_counts_adata

    name = request.param
    config, train_kw = SMALL[name]
    adata = make_counts_adata(n_cells=200, n_genes=40, seed=3)
    model = build(name, adata, **config)
    model.train(progress_bar=False, **train_kw)
    return name, adata, model


def test_generate_returns_scverse_anndata(labelled):
    _, adata, model = labelled
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
    name, adata, model = trained
    a, b, c = (sample(name, model, adata, 20, seed) for seed in (5, 5, 6))
    assert (a.X != b.X).nnz == 0
    assert (a.X != c.X).nnz > 0


def test_unknown_condition_is_a_clear_error(labelled):
    _, _, model = labelled
    with pytest.raises(ExprflowInputError, match="type0"):
        model.generate(conditions={"no_such_type": 3})


def test_save_load_roundtrip(trained, tmp_path):
    name, adata, model = trained
    model.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["var_names"] == list(adata.var_names) and cfg["model"] == type(model).__name__
    weights = torch.load(tmp_path / "m" / "weights.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in weights.values())
    loaded = type(model).load(tmp_path / "m", adata=adata)
    a, b = sample(name, model, adata, 15, 9), sample(name, loaded, adata, 15, 9)
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
    adata = _with_time(counts_adata) if name == "trajectory" else counts_adata
    cls = MODELS.get(name)
    if name == "trajectory":
        cls.setup_anndata(adata, time_key="day")  # the one writer: uns["_exprflow_setup"]
    else:
        cls.setup_anndata(adata, condition_key="cell_type")
    before = adata.copy()
    config = {**SMALL[name][0], **({"control_group": "type0"} if name == "perturbation" else {})}
    model = cls(adata, **config)
    model.train(progress_bar=False, **{**SMALL[name][1], "vae_steps": 3, "flow_steps": 3, "batch_size": 32}) \
        if "vae_steps" in SMALL[name][1] else model.train(progress_bar=False, max_steps=3, batch_size=32)
    assert (adata.X != before.X).nnz == 0
    assert adata.obs.equals(before.obs) and adata.uns.keys() == before.uns.keys()
    assert adata.uns["_exprflow_setup"] == before.uns["_exprflow_setup"]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_sampling_before_train_is_an_error(counts_adata, name):
    with pytest.raises(ExprflowInputError, match="not trained"):
        sample(name, build(name, counts_adata, **SMALL[name][0]), counts_adata, 3, 0)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_unknown_option_is_an_error(counts_adata, name):
    with pytest.raises(ExprflowInputError, match=f"Unknown {MODELS.get(name).__name__} option"):
        build(name, counts_adata, hidden_size=3)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_non_integer_counts_rejected(counts_adata, name):
    bad = counts_adata.copy()
    bad.X = bad.X.astype(np.float32)
    bad.X.data = bad.X.data * 0.5 + 0.25
    # TrajectoryFlow also models non-count data (a Gaussian latent); its count VAE refuses them
    config = {"representation": "count_vae"} if name == "trajectory" else {}
    with pytest.raises(ExprflowInputError, match="integer"):
        build(name, bad, **config)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_training_is_deterministic_on_cpu_for_a_seed(name):
    """Same data, config and seed: the same weights after training (init and batches both seeded)."""
    from synthetic import make_counts_adata

    config, train_kw = SMALL[name]
    adata = make_counts_adata(n_cells=120, n_genes=30, seed=4)
    short = {**train_kw, **{k: 20 for k in ("max_steps", "vae_steps", "flow_steps") if k in train_kw}}

    def weights(seed):
        torch.manual_seed(seed)
        model = build(name, adata, **config)
        model.train(progress_bar=False, seed=seed, **short)
        return {k: v.clone() for k, v in model._tensors().items()}

    a, b, c = weights(0), weights(0), weights(1)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())
