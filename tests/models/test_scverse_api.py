"""setup_anndata stores its settings in ``adata.uns``: copies, views and subsets keep them, and a model
refuses data set up differently."""

import re

import anndata as ad
import numpy as np
import pytest

from exprflow import LatentFlow, StateFlow, TrajectoryFlow, view_anndata_setup
from exprflow.errors import ExprflowInputError
from exprflow.data.setup import SETUP_KEY

SMALL = {"backbone_kwargs": {"hidden": 16, "depth": 1}, "vae": {"n_hidden": 16, "n_latent": 3}}


def _with_counts_layer(adata):
    out = adata.copy()
    out.layers["counts"] = out.X.copy()
    out.X = out.X.copy()
    out.X.data = np.log1p(out.X.data)  # scanpy layout: log-normalised X, counts in a layer
    return out


def test_setup_is_a_jsonable_record_in_uns(counts_adata, tmp_path):
    LatentFlow.setup_anndata(counts_adata, condition_key="cell_type")
    record = counts_adata.uns[SETUP_KEY]
    assert record == {"model": "LatentFlow", "kind": "AnnDataSetup", "condition_key": "cell_type"}
    counts_adata.write_h5ad(tmp_path / "a.h5ad")  # no None values: writable
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    assert LatentFlow(back, **SMALL).setup.condition_key == "cell_type"


def test_copies_views_and_subsets_keep_the_setup(counts_adata):
    adata = _with_counts_layer(counts_adata)
    LatentFlow.setup_anndata(adata, layer="counts", condition_key="cell_type")
    for other in (adata.copy(), adata[adata.obs.cell_type != "type0"], adata[:60].copy()):
        model = LatentFlow(other, **SMALL)
        assert model.setup.layer == "counts" and model.setup.condition_key == "cell_type"
        assert model.levels is not None  # conditional, not silently unconditional


def test_contradicting_keyword_is_refused(counts_adata):
    StateFlow.setup_anndata(counts_adata, condition_key="cell_type")
    with pytest.raises(ExprflowInputError, match="set up with condition_key='cell_type'.*setup_anndata"):
        StateFlow(counts_adata, condition_key="other")
    assert StateFlow(counts_adata, condition_key="cell_type").setup.condition_key == "cell_type"


def test_setup_of_a_view_is_refused(counts_adata):
    with pytest.raises(ExprflowInputError, match="view.*copy"):
        StateFlow.setup_anndata(counts_adata[:50], condition_key="cell_type")


def test_time_course_setup_is_not_used_by_a_cell_model(counts_adata):
    counts_adata.obs["t"] = np.arange(counts_adata.n_obs) % 3
    TrajectoryFlow.setup_anndata(counts_adata, time_key="t")
    with pytest.raises(ExprflowInputError, match="set up by TrajectoryFlow.setup_anndata"):
        StateFlow(counts_adata)
    assert StateFlow(counts_adata, condition_key="cell_type").setup.condition_key == "cell_type"


def test_view_anndata_setup(counts_adata):
    assert "not set up" in view_anndata_setup(counts_adata)
    LatentFlow.setup_anndata(counts_adata, condition_key="cell_type")
    text = view_anndata_setup(counts_adata[:10])
    assert "LatentFlow" in text and "counts: X" in text and "condition_key: 'cell_type'" in text


@pytest.fixture(scope="module")
def trained_on_layer():
    from synthetic import make_counts_adata

    adata = _with_counts_layer(make_counts_adata(n_cells=80, n_genes=20, seed=1))
    LatentFlow.setup_anndata(adata, layer="counts", condition_key="cell_type")
    model = LatentFlow(adata, **SMALL)
    model.train(max_steps=3, flow_steps=3, batch_size=32, progress_bar=False)
    return adata, model


def test_latent_representation_reads_the_models_layer_or_the_one_given(trained_on_layer):
    adata, model = trained_on_layer
    z = model.get_latent_representation(adata[:10])
    assert z.shape == (10, 3)
    plain = ad.AnnData(X=adata.layers["counts"], obs=adata.obs.copy(), var=adata.var.copy())  # counts in X
    with pytest.raises(ExprflowInputError, match="layer 'counts'.*layer='X'"):
        model.get_latent_representation(plain)
    np.testing.assert_allclose(model.get_latent_representation(plain[:10], layer="X"), z, rtol=1e-5)
    with pytest.raises(ExprflowInputError, match="layer='raw' is not in adata.layers"):
        model.get_latent_representation(adata, layer="raw")
    with pytest.raises(ExprflowInputError, match="integer|count"):
        model.get_latent_representation(adata, layer="X")  # X is log-normalised here


def test_data_set_up_differently_is_refused(trained_on_layer, tmp_path):
    adata, model = trained_on_layer
    other = adata.copy()
    LatentFlow.setup_anndata(other, layer="counts", condition_key=None)
    with pytest.raises(ExprflowInputError, match="set up with condition_key=None.*trained with condition_key="):
        model.get_latent_representation(other)
    model.save(tmp_path / "m")
    with pytest.raises(ExprflowInputError, match="set up with"):
        LatentFlow.load(tmp_path / "m", adata=other)
    assert LatentFlow.load(tmp_path / "m", adata=adata).setup == model.setup


def test_generated_cell_names_are_unique_across_calls(trained_on_layer):
    _, model = trained_on_layer
    a = model.generate(n_cells=5, n_steps=2)
    b = model.generate(n_cells=5, n_steps=2)
    assert all(re.fullmatch(r"gen_[0-9a-f]{8}_\d", n) for n in a.obs_names)
    assert a.obs_names.is_unique and not set(a.obs_names) & set(b.obs_names)
    assert ad.concat([a, b]).obs_names.is_unique
    assert (a.X != b.X).nnz == 0  # same seed, same cells: only the names differ
    assert model.generate(n_cells=2, n_steps=2, name_prefix="pbmc").obs_names[1].startswith("pbmc_")
    with pytest.raises(ExprflowInputError, match="name_prefix"):
        model.generate(n_cells=2, n_steps=2, name_prefix="")


def test_a_list_of_condition_keys_is_a_clear_error_where_one_column_is_needed(counts_adata):
    from exprflow.data import prepare_counts

    with pytest.raises(ExprflowInputError, match="ONE obs column.*combine"):  # models with several keys:
        prepare_counts(counts_adata, condition_key=["cell_type", "batch"])    # tests/conditions


def test_normalized_expression_is_decoder_means_on_the_library_size(trained_on_layer):
    adata, model = trained_on_layer
    freq = model.get_normalized_expression(adata[:7])
    assert list(freq.index) == list(adata.obs_names[:7]) and list(freq.columns) == model.var_names
    np.testing.assert_allclose(freq.sum(axis=1), 1.0, rtol=1e-4)  # means of proportions (NB decoder)
    per10k = model.get_normalized_expression(adata[:7], library_size=1e4)
    np.testing.assert_allclose(per10k.to_numpy(), freq.to_numpy() * 1e4, rtol=1e-4)
    observed = model.get_normalized_expression(adata[:7], library_size="observed")
    lib = np.asarray(adata.layers["counts"][:7].sum(axis=1)).ravel()
    np.testing.assert_allclose(observed.sum(axis=1), lib, rtol=1e-4)
    assert model.get_normalized_expression().shape == (adata.n_obs, adata.n_vars)  # the training cells
    with pytest.raises(ExprflowInputError, match="library_size"):
        model.get_normalized_expression(adata, library_size=0)


def test_repr_describes_the_model(trained_on_layer, counts_adata):
    _, model = trained_on_layer
    text = repr(model)
    assert text.startswith("LatentFlow (trained in") and "80 training cells x 20 genes" in text
    assert "layers['counts']" in text and "condition_key: 'cell_type'" in text and "backbone: mlp" in text
    assert "not trained" in repr(StateFlow(counts_adata))
