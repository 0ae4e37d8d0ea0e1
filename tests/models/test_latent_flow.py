"""LatentFlow specifics: the count VAE phase, latents, decoding, library sizes, bad input.

The shared contract (generate/save/load/errors) is in test_model_contract.py.
"""

import logging

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from exprflow.errors import ExprflowInputError
from exprflow.models import LatentFlow

SMALL = {"backbone_kwargs": {"hidden": 64, "depth": 2}, "vae": {"n_hidden": 64, "n_latent": 4}}


def _profile(x: np.ndarray) -> np.ndarray:
    return np.log1p(x / np.maximum(x.sum(1, keepdims=True), 1) * 1e4).mean(0)


@pytest.fixture(scope="module")
def trained():
    from synthetic import make_counts_adata

    adata = make_counts_adata(n_cells=300, n_genes=40, seed=4)
    model = LatentFlow(adata, condition_key="cell_type", **SMALL)
    model.train(max_steps=400, batch_size=64, flow_steps=400, progress_bar=False)
    return adata, model


def test_both_phases_learn(trained):
    _, model = trained
    for phase in ("vae", "flow"):
        losses = model.history[phase]["loss"].to_numpy()
        assert np.isfinite(losses).all()
        assert losses[-30:].mean() < losses[:30].mean(), phase


def test_generated_types_match_their_real_profiles(trained):
    adata, model = trained
    gen = model.generate(conditions={f"type{k}": 150 for k in range(3)}, n_steps=16, seed=2)
    real = adata.X.toarray()
    real_prof = {k: _profile(real[(adata.obs.cell_type == f"type{k}").to_numpy()]) for k in range(3)}
    for k in range(3):
        g = _profile(gen[(gen.obs.cell_type == f"type{k}").to_numpy()].X.toarray())
        assert int(np.argmin([np.linalg.norm(g - real_prof[j]) for j in range(3)])) == k


def test_generated_library_sizes_are_realistic(trained):
    adata, model = trained
    gen = model.generate(n_cells=300, seed=3)
    real_lib = np.asarray(adata.X.sum(1)).ravel()
    gen_lib = np.asarray(gen.X.sum(1)).ravel()
    assert 0.67 < np.median(gen_lib) / np.median(real_lib) < 1.5
    assert 0.5 < np.std(np.log(gen_lib)) / np.std(np.log(real_lib)) < 2.0


def test_latent_representation_separates_types(trained):
    adata, model = trained
    z = model.get_latent_representation(adata)
    assert z.shape == (adata.n_obs, 4) and np.isfinite(z).all()
    labels = adata.obs.cell_type.to_numpy()
    centroids = {t: z[labels == t].mean(0) for t in np.unique(labels)}
    nearest = [min(centroids, key=lambda t: np.linalg.norm(row - centroids[t])) for row in z]
    assert np.mean(np.array(nearest) == labels) > 0.9


def test_decode_mean_and_sample(trained):
    adata, model = trained
    z = model.get_latent_representation(adata)[:50]
    lib = np.full(50, 1000.0)
    mean = model.decode(z, lib, sample=False)
    assert mean.shape == (50, adata.n_vars) and np.allclose(mean.sum(1), 1000.0, rtol=1e-4)
    counts = model.decode(z, lib, sample=True, seed=1)
    assert np.array_equal(counts, np.round(counts)) and (counts >= 0).all()
    assert np.array_equal(counts, model.decode(z, lib, sample=True, seed=1))
    gen = model.generate(n_cells=20, decode="mean", seed=0)
    assert not np.issubdtype(gen.X.dtype, np.integer) and (gen.X.data % 1 != 0).any()
    with pytest.raises(ExprflowInputError, match="decode must be one of"):
        model.generate(n_cells=2, decode="median")


@pytest.mark.parametrize("likelihood", ["zinb", "poisson"])
def test_other_likelihoods_train(counts_adata, likelihood):
    model = LatentFlow(counts_adata, condition_key="cell_type", **{**SMALL, "vae": {**SMALL["vae"], "likelihood": likelihood}})
    model.train(max_steps=30, batch_size=32, flow_steps=20, progress_bar=False)
    assert (model.vae.zi_logits is not None) == (likelihood == "zinb")
    out = model.generate(n_cells=10, n_steps=4)
    assert np.isfinite(out.X.toarray()).all()


def test_lognormal_library_and_deterministic_autoencoder(counts_adata):
    model = LatentFlow(counts_adata, library="lognormal", **{**SMALL, "vae": {**SMALL["vae"], "deterministic": True}})
    assert model.backbone.dim == 4  # no library coordinate in the flow state
    model.train(max_steps=30, batch_size=32, flow_steps=20, progress_bar=False)
    assert (model.history["vae"]["kl"] == 0.0).all()  # no KL term
    assert model.generate(n_cells=10, n_steps=4).n_obs == 10


def test_flow_on_posterior_draws(counts_adata):
    """posterior_draws=k: the flow trains on k draws z ~ q(z|x) per cell around the encoder means."""
    model = LatentFlow(counts_adata, condition_key="cell_type", posterior_draws=3, **SMALL)
    model.train(max_steps=30, batch_size=32, flow_steps=20, progress_bar=False, seed=0)
    states, codes = model._flow_data(None, None)
    n = len(model.train_codes)
    assert states.shape == (3 * n, model.state_dim) and len(codes) == 3 * n
    np.testing.assert_array_equal(codes[n : 2 * n], model.train_codes)
    means = model.representation.encode(model.data.X, library=model.data.library_size)
    draws = states.reshape(3, n, -1)
    assert not np.allclose(draws[0], draws[1])  # independent draws
    np.testing.assert_allclose(draws[..., -1], np.broadcast_to(means[:, -1], (3, n)), rtol=1e-4, atol=1e-4)  # library
    assert np.abs(draws.mean(0) - means)[:, :-1].mean() < np.abs(draws[0] - means)[:, :-1].mean()
    assert model.generate(n_cells=10, n_steps=4).n_obs == 10
    with pytest.raises(ExprflowInputError, match="posterior_draws must be an integer >= 0"):
        LatentFlow(counts_adata, posterior_draws=-1)


def test_set_encoder_is_the_exact_deepsets_mean_and_order_invariant():
    """The sparse form (detected genes only) equals the dense mean over all G tokens, and permuting the
    genes together with their embeddings leaves the encoding unchanged."""
    from exprflow.representations.vae import GeneSetEncoder

    torch.manual_seed(0)
    enc = GeneSetEncoder(30, 2, 16, 0.0, "layer").eval()
    u = torch.log1p(torch.poisson(torch.rand(6, 30) * 0.7))
    extra = torch.eye(2)[torch.tensor([0, 1, 0, 1, 1, 0])]
    h = enc(torch.cat([u, extra], 1))
    tokens = enc.embedding.weight[None] + enc.value(u.unsqueeze(-1))
    dense = enc.rho(torch.cat([enc.pooled_norm(enc.phi(tokens).mean(1)), extra], 1))
    torch.testing.assert_close(h, dense, rtol=1e-5, atol=1e-5)
    perm = torch.randperm(30)
    with torch.no_grad():
        enc.embedding.weight.copy_(enc.embedding.weight[perm])
    torch.testing.assert_close(enc(torch.cat([u[:, perm], extra], 1)), h, rtol=1e-5, atol=1e-5)


def test_set_encoder_trains_and_generates(counts_adata):
    model = LatentFlow(counts_adata, condition_key="cell_type", **{**SMALL, "vae": {**SMALL["vae"], "encoder": "set"}})
    model.train(max_steps=40, batch_size=32, flow_steps=20, progress_bar=False, seed=0)
    loss = model.history["vae"]["loss"]
    assert loss[-10:].mean() < loss[:10].mean()
    assert np.isfinite(model.get_latent_representation()).all()
    assert model.generate(n_cells=10, n_steps=4).n_obs == 10
    with pytest.raises(ExprflowInputError, match="encoder must be one of"):
        LatentFlow(counts_adata, vae={"encoder": "transformer"})


def test_unknown_likelihood_lists_choices(counts_adata):
    with pytest.raises(ExprflowInputError, match="nb, poisson, zinb"):
        LatentFlow(counts_adata, vae={"likelihood": "gaussian"})


def test_all_zero_gene_keeps_dispersion_finite(counts_adata):
    adata = counts_adata.copy()
    X = adata.X.toarray()
    X[:, 0] = 0
    adata.X = sp.csr_matrix(X)
    model = LatentFlow(adata, **SMALL)
    model.train(max_steps=200, batch_size=32, flow_steps=10, progress_bar=False)
    assert torch.isfinite(model.vae.log_theta).all()
    out = model.generate(n_cells=50, n_steps=4)
    per_gene = np.asarray(out.X.mean(0)).ravel()
    assert per_gene[0] < 0.1 * per_gene[1:].mean()  # the all-zero gene is learned as (nearly) silent


def test_zero_library_cells_are_dropped_with_a_log(counts_adata, caplog):
    adata = counts_adata.copy()
    X = adata.X.toarray()
    X[:3] = 0
    adata.X = sp.csr_matrix(X)
    with caplog.at_level(logging.WARNING, logger="exprflow.data"):
        model = LatentFlow(adata, **SMALL)
    assert model.data.n_cells == adata.n_obs - 3
    assert any("3" in r.getMessage() and "zero" in r.getMessage().lower() for r in caplog.records)


def test_float_counts_error_names_the_layer(counts_adata):
    bad = counts_adata.copy()
    bad.layers["counts"] = bad.X.copy()
    bad.X = bad.X.astype(np.float32)
    bad.X.data = np.log1p(bad.X.data)
    with pytest.raises(ExprflowInputError, match=r"adata\.X.*layers\['counts'\]"):
        LatentFlow(bad)


def test_loaded_model_cannot_retrain_but_encodes(trained, tmp_path):
    adata, model = trained
    model.save(tmp_path / "lf")
    loaded = LatentFlow.load(tmp_path / "lf", adata=adata)
    np.testing.assert_allclose(loaded.get_latent_representation(adata), model.get_latent_representation(adata), atol=1e-5)
    with pytest.raises(ExprflowInputError, match="loaded model"):
        loaded.train()
    with pytest.raises(ExprflowInputError, match="Pass adata"):
        loaded.get_latent_representation()


def test_real_pbmc3k_subset_gene_statistics(pbmc3k):
    """On real counts (600 PBMC3k cells x 300 genes), short training already gets per-gene zero fractions
    and library sizes right: the decoder's likelihood, not the flow, carries them."""
    rng = np.random.default_rng(0)
    cells = rng.choice(pbmc3k.n_obs, 600, replace=False)
    genes = np.argsort(-np.asarray(pbmc3k.X.sum(0)).ravel())[:300]
    adata = pbmc3k[np.sort(cells)][:, np.sort(genes)].copy()
    model = LatentFlow(adata, condition_key="cell_type", **SMALL)
    model.train(max_steps=300, batch_size=64, flow_steps=300, progress_bar=False)
    request = adata.obs.cell_type.astype(str).value_counts()
    gen = model.generate(conditions={k: int(v) for k, v in request.items() if v > 0}, seed=0)
    real_zero = np.asarray((adata.X == 0).mean(0)).ravel()
    gen_zero = np.asarray((gen.X.toarray() == 0).mean(0)).ravel()
    assert np.corrcoef(real_zero, gen_zero)[0, 1] > 0.9
    real_lib, gen_lib = np.asarray(adata.X.sum(1)).ravel(), np.asarray(gen.X.sum(1)).ravel()
    assert 0.8 < np.median(gen_lib) / np.median(real_lib) < 1.25


@pytest.mark.slow
def test_real_pbmc3k_full_protocol(pbmc3k):
    """The demo's pipeline with the default LatentFlow on all of PBMC3k (a few minutes)."""
    from exprflow.experiment import ExperimentSpec, run_experiment

    summary = run_experiment(pbmc3k, ExperimentSpec(model="latent"), None, condition_key="cell_type",
                             plots=False, progress_bar=False)
    ratio, m = summary["metrics"]["ratio_to_floor"], summary["metrics"]["metrics"]
    assert ratio["energy"] < 2.0 and m["c2st_knn"] < 0.7 and m["label_accuracy"] > 0.85


def test_default_vae_budget_rule():
    """400 epochs, at most 6,000 steps, and at most 8.4e7 gene-steps (compute bounded on large panels)."""
    from exprflow.models.latent_flow import default_vae_steps

    assert default_vae_steps(2100, 2000, 128) == 6000  # PBMC3k-sized: the step cap
    assert default_vae_steps(300, 2000, 128) == 400 * 2  # small data: 400 epochs
    assert default_vae_steps(11199, 14053, 128) == 5977  # 14,000 genes: the compute cap
    assert default_vae_steps(2000, 35000, 128) == 2400
    assert default_vae_steps(5, 10, 128) == 400  # fewer cells than a batch: one step per epoch
