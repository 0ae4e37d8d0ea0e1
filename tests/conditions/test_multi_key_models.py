"""Models with several condition keys: training, requests, marginals, guidance per attribute, save/load."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from exprflow.errors import ExprflowInputError
from exprflow.models import LatentFlow, PerturbationFlow, StateFlow

from condition_helpers import KEYS, make_two_attribute_adata


def _donor_signal(fake) -> np.ndarray:
    X = np.asarray(fake.X.todense(), dtype=float)
    norm = np.log1p(X / np.maximum(X.sum(1, keepdims=True), 1) * 1e4)
    return norm[:, :5].mean(1)


@pytest.fixture(scope="module")
def trained():
    adata = make_two_attribute_adata()
    model = StateFlow(adata, condition_key=KEYS, backbone_kwargs={"hidden": 64, "depth": 2}, cond_dropout=0.2)
    model.train(max_steps=400, batch_size=64, progress_bar=False)
    return adata, model


def test_combinations_follow_both_attributes(trained):
    _, model = trained
    d1 = model.generate(n_cells=150, conditions={"cell_type": "type0", "donor": "d1"}, seed=1)
    d2 = model.generate(n_cells=150, conditions={"cell_type": "type0", "donor": "d2"}, seed=1)
    assert _donor_signal(d2).mean() > _donor_signal(d1).mean() + 0.5
    assert (d2.obs["cell_type"] == "type0").all() and (d2.obs["donor"] == "d2").all()


def test_unspecified_attribute_is_marginalised(trained):
    _, model = trained
    fake = model.generate(n_cells=200, conditions={"cell_type": "type1"}, seed=2)
    assert fake.obs["donor"].isna().all()
    sig = _donor_signal(fake)
    d1 = _donor_signal(model.generate(n_cells=200, conditions={"cell_type": "type1", "donor": "d1"}, seed=2))
    d2 = _donor_signal(model.generate(n_cells=200, conditions={"cell_type": "type1", "donor": "d2"}, seed=2))
    assert d1.mean() < sig.mean() < d2.mean()


def test_dataframe_request_with_counts_and_like_obs(trained):
    adata, model = trained
    table = pd.DataFrame({"cell_type": ["type0", "type2"], "donor": ["d2", np.nan], "n_cells": [3, 5]})
    fake = model.generate(conditions=table)
    assert fake.n_obs == 8 and (fake.obs["cell_type"] == "type2").sum() == 5
    assert fake.obs["donor"].isna().sum() == 5
    like = model.generate(conditions=adata.obs[KEYS].iloc[:50])
    assert (like.obs["cell_type"].astype(str).to_numpy() == adata.obs["cell_type"].astype(str).to_numpy()[:50]).all()
    default = model.generate(n_cells=40)
    assert default.obs[KEYS].notna().all().all()


def test_guidance_per_attribute_changes_cells_and_is_recorded(trained):
    _, model = trained
    request = {"cell_type": "type0", "donor": "d2"}
    plain = model.generate(n_cells=100, conditions=request, seed=3)
    strong = model.generate(n_cells=100, conditions=request, seed=3, guidance={"donor": 3.0}, composition="product")
    assert strong.uns["exprflow"]["guidance"] == {"donor": 3.0}
    assert strong.uns["exprflow"]["composition"] == "product"
    assert not np.array_equal(plain.X.toarray(), strong.X.toarray())


def test_bad_requests_are_input_errors(trained):
    _, model = trained
    with pytest.raises(ExprflowInputError, match="batch"):
        model.generate(n_cells=5, conditions={"batch": "x"})
    with pytest.raises(ExprflowInputError, match="type9"):
        model.generate(n_cells=5, conditions={"cell_type": "type9"})
    with pytest.raises(ExprflowInputError, match="DataFrame"):
        model.generate(n_cells=5, conditions="type0")
    with pytest.raises(ExprflowInputError, match="composition"):
        model.generate(n_cells=5, conditions={"cell_type": "type0"}, guidance={"donor": 2.0}, composition="sum")


def test_save_load_roundtrip(trained, tmp_path):
    _, model = trained
    model.save(str(tmp_path / "m"))
    loaded = StateFlow.load(str(tmp_path / "m"))
    request = {"cell_type": "type2", "donor": "d1"}
    a = model.generate(n_cells=20, conditions=request, seed=5)
    b = loaded.generate(n_cells=20, conditions=request, seed=5)
    assert np.array_equal(a.X.toarray(), b.X.toarray())
    assert loaded.condition_keys == KEYS
    assert "donor: 2 levels (d1, d2)" in repr(loaded)
    assert np.array_equal(np.sort(loaded.train_codes), np.sort(model.train_codes))


def test_setup_anndata_and_latent_flow_accept_a_list():
    adata = make_two_attribute_adata(n_cells=120, seed=1)
    LatentFlow.setup_anndata(adata, condition_key=KEYS)
    model = LatentFlow(adata, backbone_kwargs={"hidden": 32, "depth": 1}, vae={"n_hidden": 32, "n_latent": 4})
    model.train(max_steps=20, flow_steps=20, progress_bar=False)
    fake = model.generate(n_cells=10, conditions={"donor": "d2"}, guidance={"donor": 2.0})
    assert fake.n_obs == 10 and fake.obs["cell_type"].isna().all()
    assert "donor" not in adata.var and list(adata.obs.columns) == ["cell_type", "donor"]


def test_models_with_a_role_for_the_condition_refuse_a_list():
    adata = make_two_attribute_adata(n_cells=60)
    with pytest.raises(ExprflowInputError, match="one condition_key"):
        PerturbationFlow(adata, condition_key=KEYS, control_group="d1")


def test_missing_key_is_an_input_error():
    adata = make_two_attribute_adata(n_cells=60)
    with pytest.raises(ExprflowInputError, match="batch"):
        StateFlow(adata, condition_key=["cell_type", "batch"])


def test_batch_key_decodes_as_if_from_another_batch(tmp_path):
    adata = make_two_attribute_adata(n_cells=300, seed=2)
    model = LatentFlow(adata, condition_key="cell_type", batch_key="donor",
                       backbone_kwargs={"hidden": 32, "depth": 1}, vae={"n_hidden": 64, "n_latent": 4})
    model.train(max_steps=300, flow_steps=200, batch_size=64, progress_bar=False)
    assert model.vae.n_batches == 2
    d1 = model.generate(n_cells=150, conditions="type0", batch="d1", seed=1, decode="mean")
    d2 = model.generate(n_cells=150, conditions="type0", batch="d2", seed=1, decode="mean")
    assert (d2.obs["donor"] == "d2").all()
    assert _donor_signal(d2).mean() > _donor_signal(d1).mean() + 0.5  # the decoder carries the donor effect
    assert model.generate(n_cells=10, conditions="type0").obs["donor"].isna().all()
    assert model.get_latent_representation(adata).shape == (adata.n_obs, 4)
    assert model.get_normalized_expression(adata[:5]).shape == (5, adata.n_vars)
    model.save(str(tmp_path / "b"))
    loaded = LatentFlow.load(str(tmp_path / "b"))
    again = loaded.generate(n_cells=150, conditions="type0", batch="d2", seed=1, decode="mean")
    assert np.allclose(again.X.toarray(), d2.X.toarray(), atol=1e-4)
    with pytest.raises(ExprflowInputError, match="d3"):
        model.generate(n_cells=5, conditions="type0", batch="d3")


def test_setup_with_several_keys_survives_an_h5ad_round_trip(tmp_path):
    import anndata as ad

    adata = make_two_attribute_adata(n_cells=80, seed=3)
    StateFlow.setup_anndata(adata, condition_key=KEYS)
    adata.write_h5ad(tmp_path / "a.h5ad")
    model = StateFlow(ad.read_h5ad(tmp_path / "a.h5ad"), backbone_kwargs={"hidden": 16, "depth": 1})
    assert model.condition_keys == KEYS and model.condition_space.keys == tuple(KEYS)
