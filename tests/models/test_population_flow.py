"""PopulationFlow and the cell_set backbone: cells as tokens (issue 7 part 2)."""

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from click.testing import CliRunner
from shared_data import shared_path

from exprflow.backbones import BACKBONES
from exprflow.errors import ExprflowInputError
from exprflow.models import MODELS, PopulationFlow

SMALL = {"vae": {"n_hidden": 32, "n_latent": 4}, "backbone_kwargs": {"width": 32, "depth": 2, "n_heads": 2}}
N = 16


def _perturbed_cell_set(dim=5, n_conditions=3):
    torch.manual_seed(0)
    model = BACKBONES.get("cell_set")(dim=dim, n_conditions=n_conditions, width=32, depth=2, n_heads=2)
    with torch.no_grad():
        for p in model.parameters():  # wake up the zero-initialised adaLN gates and output layer
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def test_cell_set_is_permutation_equivariant_over_cells_and_mixes_them():
    model = _perturbed_cell_set()
    x, t, cond = torch.randn(3, 10, 5), torch.rand(3), torch.tensor([0, 2, 3])
    with torch.no_grad():
        v = model(x, t, cond)
        perm = torch.randperm(10)
        torch.testing.assert_close(model(x[:, perm], t, cond), v[:, perm], rtol=1e-4, atol=1e-5)
        # a cell's velocity depends on the other cells of its population (not a per-cell model) ...
        y = x.clone()
        y[:, 0] += 1.0
        assert not torch.allclose(model(y, t, cond)[:, 1:], v[:, 1:], atol=1e-4)
        # ... but never on other populations
        z = x.clone()
        z[1] += 1.0
        torch.testing.assert_close(model(z, t, cond)[[0, 2]], v[[0, 2]], rtol=1e-4, atol=1e-5)
        # a (B, d) input is B populations of one cell
        torch.testing.assert_close(model(x[:, 0], t, cond), model(x[:, :1], t, cond)[:, 0])


@pytest.fixture(scope="module")
def kang():
    """kang-small restricted to its 200 most expressed genes (all 1,556 cells, 4 samples)."""
    adata = ad.read_h5ad(shared_path("kang2018_ifnb_small_labeled.h5ad"))
    top = np.argsort(-np.asarray(adata.X.sum(0)).ravel())[:200]
    return adata[:, np.sort(top)].copy()


@pytest.fixture(scope="module")
def trained(kang):
    torch.manual_seed(0)
    model = PopulationFlow(kang, condition_key="sample_id", population_size=N, **SMALL)
    model.train(max_steps=30, flow_steps=30, flow_batch_size=4, progress_bar=False)
    return model


def test_generate_populations_shapes_and_obs(trained, kang):
    out = trained.generate_populations(5, condition=["stim101", "ctrl107", "stim101", "ctrl101", "ctrl107"],
                                       n_steps=4)
    assert out.shape == (5 * N, kang.n_vars) and list(out.var_names) == list(kang.var_names)
    assert sp.issparse(out.X) and np.issubdtype(out.X.dtype, np.integer) and out.X.min() >= 0
    pops = out.obs["population"].astype(str).to_numpy()
    assert list(pops[::N]) == [f"pop_{p}" for p in range(5)] and (pops.reshape(5, N) == pops[::N, None]).all()
    requested = ["stim101", "ctrl107", "stim101", "ctrl101", "ctrl107"]
    assert list(out.obs["sample_id"].astype(str).to_numpy()[::N]) == requested
    assert (out.obs["source"] == "generated").all() and out.uns["exprflow"]["population_size"] == N
    other = trained.generate_populations(2, condition="ctrl101", population_size=5, n_steps=2, decode="mean")
    assert other.n_obs == 10 and not np.issubdtype(other.X.dtype, np.integer)
    counted = trained.generate_populations(3, condition={"ctrl101": 1, "stim107": 2}, n_steps=2)
    assert counted.obs["sample_id"].astype(str).value_counts()[["ctrl101", "stim107"]].tolist() == [N, 2 * N]


def test_requested_condition_order_does_not_change_a_population(trained):
    """Populations are integrated grouped by condition, then put back in request order."""
    a = trained.generate_populations(2, condition=["ctrl101", "stim107"], n_steps=3, seed=4)
    b = trained.generate_populations(2, condition=["stim107", "ctrl101"], n_steps=3, seed=4)
    assert a.n_obs == b.n_obs == 2 * N
    assert (a.X[:N] != b.X[N:]).nnz == 0 and (a.X[N:] != b.X[:N]).nnz == 0  # same draws, reordered


def test_flow_model_contract_generate(trained):
    out = trained.generate(conditions={"ctrl101": 20, "stim101": 7}, n_steps=4, seed=1)
    assert out.n_obs == 27
    assert out.obs["sample_id"].astype(str).value_counts()[["ctrl101", "stim101"]].tolist() == [20, 7]
    a, b = (trained.generate(n_cells=9, n_steps=2, seed=3) for _ in range(2))
    assert a.n_obs == 9 and (a.X != b.X).nnz == 0


def test_save_load_roundtrip_same_output_for_a_seed(trained, kang, tmp_path):
    trained.save(tmp_path / "m")
    loaded = PopulationFlow.load(tmp_path / "m", adata=kang)
    assert loaded.config.population_size == N and loaded.config.backbone == "cell_set"
    a = trained.generate_populations(3, condition="stim107", n_steps=4, seed=7)
    b = loaded.generate_populations(3, condition="stim107", n_steps=4, seed=7)
    assert (a.X != b.X).nnz == 0
    c = loaded.generate_populations(3, condition="stim107", n_steps=4, seed=8)
    assert (a.X != c.X).nnz > 0
    with pytest.raises(ExprflowInputError, match="cannot be trained again"):
        loaded.train_flow(2)
    with pytest.raises(ExprflowInputError, match="flow_batch_size must be a positive integer"):
        PopulationFlow(kang, condition_key="sample_id", population_size=N, **SMALL).train(flow_batch_size=0)


def test_user_anndata_untouched_and_flow_retrained_on_a_shared_vae(trained, kang):
    before = kang.copy()
    model = PopulationFlow(kang, condition_key="sample_id", population_size=1, **SMALL)
    model.vae.load_state_dict(trained.vae.state_dict())
    model.train_flow(3, 8, progress_bar=False)
    assert model.is_trained and model.history["vae"].empty and len(model.history["flow"]) == 3
    assert model.generate_populations(4, condition="ctrl101", n_steps=2).n_obs == 4
    assert (kang.X != before.X).nnz == 0 and kang.obs.equals(before.obs) and kang.uns.keys() == before.uns.keys()


@pytest.mark.parametrize("kwargs,match", [
    ({"condition_key": "sample_id", "population_size": 10_000}, "fewer cells than population_size"),
    ({"condition_key": "donor"}, "donor"),
    ({"condition_key": "sample_id", "composition_key": "celltype", "concentration": 5.0}, "not an obs column"),
])
def test_bad_populations_are_clear_errors_before_training(kang, kwargs, match):
    with pytest.raises(ExprflowInputError, match=match):
        PopulationFlow(kang, **SMALL, **kwargs)


def test_generate_populations_errors(trained):
    with pytest.raises(ExprflowInputError, match="Unknown condition"):
        trained.generate_populations(2, condition="ctrl999")
    with pytest.raises(ExprflowInputError, match="positive integer"):
        trained.generate_populations(2, condition="ctrl101", population_size=0)
    with pytest.raises(ExprflowInputError, match="not trained"):
        PopulationFlow(_tiny(), population_size=8, **SMALL).generate_populations(1)


def _tiny():
    from synthetic import make_counts_adata

    return make_counts_adata(n_cells=80, n_genes=20)


def test_dirichlet_composition_trains_unconditionally():
    adata = _tiny()
    model = PopulationFlow(adata, population_size=8, composition_key="cell_type", concentration=3.0, **SMALL)
    model.train(max_steps=3, flow_steps=3, progress_bar=False)
    out = model.generate_populations(2, n_steps=2)
    assert out.n_obs == 16 and "cell_type" not in out.obs  # unconditional: no condition column


def test_cli_fit_population_model(tmp_path, kang):
    from exprflow.cli import cli

    assert MODELS.get("population") is PopulationFlow
    kang.write_h5ad(tmp_path / "kang.h5ad")
    args = ["fit", "--data", tmp_path / "kang.h5ad", "--model", "population", "--condition-key", "sample_id",
            "--model-kwargs", '{"population_size": 32, "flow_steps": 5, "vae": {"n_hidden": 32, "n_latent": 4}}',
            "--backbone-kwargs", '{"width": 32, "depth": 1}', "--max-steps", 5, "--out", tmp_path / "run"]
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    loaded = PopulationFlow.load(tmp_path / "run" / "model")
    assert loaded.config.population_size == 32 and len(loaded.history["flow"]) == 5
    bad = CliRunner().invoke(cli, [str(a) for a in args[:-2]] + ["--out", str(tmp_path / "run2"), "--model-kwargs",
                                                                  '{"population_size": 100000}'])
    assert bad.exit_code == 2 and "population_size" in bad.output
