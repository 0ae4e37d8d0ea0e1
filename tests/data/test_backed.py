"""Out-of-core data: the streaming pass equals the in-memory one, the block-shuffled loader visits every
cell once per epoch with the right values, and models train from a file that stays on disk."""

from __future__ import annotations

import pickle

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from data_helpers import result_or_input_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from synthetic import make_counts_adata
from test_data_properties import anndatas

from exprflow.data import make_dataloader, prepare_counts
from exprflow.data.backed import BackedRows, prepare_backed_counts
from exprflow.data.block_shuffle import BlockShuffleDataset, InMemoryRows
from exprflow.errors import ExprflowInputError
from exprflow.representations import StateVector


@pytest.fixture
def adata_with_empty():
    adata = make_counts_adata(n_cells=150, n_genes=40, seed=3)
    X = adata.X.toarray()
    X[[0, 7, 8, 149]] = 0  # all-zero cells: dropped in both paths, including inside a block
    adata.X = sp.csr_matrix(X)
    adata.layers["counts"] = adata.X.copy()
    return adata


@pytest.fixture
def h5ad_path(adata_with_empty, tmp_path):
    path = tmp_path / "cells.h5ad"
    adata_with_empty.write_h5ad(path)
    return path


def test_streaming_pass_equals_in_memory(adata_with_empty, h5ad_path):
    mem = prepare_counts(adata_with_empty, condition_key="cell_type")
    for source in (h5ad_path, ad.read_h5ad(h5ad_path, backed="r")):
        disk = prepare_backed_counts(source, condition_key="cell_type", chunk_rows=16)
        assert disk.n_cells == mem.n_cells == 146 and disk.n_dropped_cells == 4
        np.testing.assert_array_equal(disk.kept, mem.kept)
        np.testing.assert_array_equal(disk.library_size, mem.library_size)
        np.testing.assert_array_equal(disk.conditions, mem.conditions)
        assert disk.condition_levels == mem.condition_levels and disk.obs_names == mem.obs_names
        assert disk.is_counts and disk.var_names == mem.var_names
        # reading every row back (slices, unsorted arrays with repeats) gives the in-memory rows
        np.testing.assert_array_equal(disk.X[10:60].toarray(), mem.X[10:60].toarray())
        rows = np.array([145, 3, 3, 70, 0, 71, 72])
        np.testing.assert_array_equal(disk.X[rows].toarray(), mem.X[rows].toarray())


def test_state_vector_statistics_from_disk_equal_in_memory(adata_with_empty, h5ad_path):
    mem = prepare_counts(adata_with_empty)
    disk = prepare_backed_counts(h5ad_path)
    a, b = StateVector().fit(mem.X, chunk_size=32), StateVector().fit(disk.X, chunk_size=32)
    for name in ("mean", "std", "max"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-6)


def test_layer_on_disk_and_streamed_validation(adata_with_empty, tmp_path):
    adata = adata_with_empty.copy()
    X = adata.X.toarray()
    X[90, 5] = 2.5  # a non-integer value far from the first chunk
    adata.X = sp.csr_matrix(X)
    path = tmp_path / "bad.h5ad"
    adata.write_h5ad(path)
    with pytest.raises(ExprflowInputError, match=r"non-integer.*'cell90'.*pass layer='counts'"):
        prepare_backed_counts(path, chunk_rows=8)
    ok = prepare_backed_counts(path, layer="counts", chunk_rows=8)  # the counts layer, read from disk
    assert ok.n_cells == 146
    with pytest.raises(ExprflowInputError, match="not stored"):
        prepare_backed_counts(path, layer="nope")
    with pytest.raises(ExprflowInputError, match="File not found"):
        prepare_backed_counts(tmp_path / "missing.h5ad")
    with pytest.raises(ExprflowInputError, match="file-backed"):
        prepare_backed_counts(adata)


def test_csc_on_disk_is_refused(adata_with_empty, tmp_path):
    adata = adata_with_empty.copy()
    adata.X = sp.csc_matrix(adata.X)
    adata.write_h5ad(tmp_path / "csc.h5ad")
    with pytest.raises(ExprflowInputError, match="CSC"):
        prepare_backed_counts(tmp_path / "csc.h5ad")


def _epoch(dataset, epoch):
    dataset.set_epoch(epoch)
    return list(dataset)


@pytest.mark.parametrize("block_rows,buffer_blocks,batch_size", [(16, 3, 10), (7, 1, 32), (64, 8, 5)])
def test_block_loader_visits_every_row_once_with_the_right_values(adata_with_empty, h5ad_path, block_rows,
                                                                  buffer_blocks, batch_size):
    mem = prepare_counts(adata_with_empty, condition_key="cell_type")
    disk = prepare_backed_counts(h5ad_path, condition_key="cell_type")
    dataset = BlockShuffleDataset(disk.X, disk.conditions, batch_size, block_rows=block_rows,
                                  buffer_blocks=buffer_blocks, drop_last=False, seed=5)
    batches = _epoch(dataset, 0)
    assert len(batches) == len(dataset) == -(-146 // batch_size)
    seen = np.concatenate([b["index"].numpy() for b in batches])
    np.testing.assert_array_equal(np.sort(seen), np.arange(146))  # each kept cell exactly once
    for b in batches:
        idx = b["index"].numpy()
        np.testing.assert_array_equal(b["x"].numpy(), mem.X[idx].toarray())
        np.testing.assert_array_equal(b["cond"].numpy(), mem.conditions[idx])
    assert all(len(b["index"]) == batch_size for b in batches[:-1])
    assert not np.array_equal(seen, np.arange(146))  # shuffled


def test_block_order_depends_on_seed_and_epoch_and_is_reproducible(adata_with_empty):
    rows = InMemoryRows(prepare_counts(adata_with_empty).X)
    order = lambda seed, epoch: np.concatenate(  # noqa: E731
        [b["index"].numpy() for b in _epoch(BlockShuffleDataset(rows, None, 8, block_rows=10, seed=seed), epoch)])
    assert np.array_equal(order(0, 0), order(0, 0))
    assert not np.array_equal(order(0, 0), order(1, 0))
    assert not np.array_equal(order(0, 0), order(0, 1))
    auto = BlockShuffleDataset(rows, None, 8, block_rows=10, seed=0)
    first, second = list(auto), list(auto)  # without set_epoch each pass takes the next epoch
    assert not np.array_equal(first[0]["index"].numpy(), second[0]["index"].numpy())
    ordered = BlockShuffleDataset(rows, None, 8, shuffle=False, drop_last=False)
    np.testing.assert_array_equal(np.concatenate([b["index"].numpy() for b in ordered]), np.arange(146))


def test_drop_last_and_rank_sharding(adata_with_empty):
    rows = InMemoryRows(prepare_counts(adata_with_empty).X)
    full = BlockShuffleDataset(rows, None, 10, block_rows=9, drop_last=True)
    assert len(full) == 14 and all(len(b["index"]) == 10 for b in _epoch(full, 0)) and len(_epoch(full, 0)) == 14
    shards = [BlockShuffleDataset(rows, None, 10, block_rows=9, seed=2, rank=r, world_size=3) for r in range(3)]
    seen = [np.concatenate([b["index"].numpy() for b in _epoch(s, 4)]) for s in shards]
    assert [len(_epoch(s, 4)) for s in shards] == [len(shards[0])] * 3 == [146 // 3 // 10] * 3  # equal per rank
    assert not set(seen[0]) & set(seen[1]) and not set(seen[1]) & set(seen[2])  # disjoint blocks


def test_make_dataloader_routes_backed_rows_and_reader_pickles(h5ad_path):
    disk = prepare_backed_counts(h5ad_path, condition_key="cell_type")
    loader = make_dataloader(disk, batch_size=16, seed=1, drop_last=True)
    assert isinstance(loader.dataset, BlockShuffleDataset) and len(loader) == 146 // 16
    batch = next(iter(loader))
    assert batch["x"].shape == (16, 40) and batch["cond"].dtype.is_floating_point is False
    clone = pickle.loads(pickle.dumps(disk.X))  # a DataLoader worker / DDP rank reopens the file
    assert isinstance(clone, BackedRows) and clone._file is None
    np.testing.assert_array_equal(clone[5:9].toarray(), disk.X[5:9].toarray())
    sub = disk.subset(np.arange(0, 146, 2))
    np.testing.assert_array_equal(sub.X[0:3].toarray(), disk.X[np.array([0, 2, 4])].toarray())


@pytest.mark.parametrize("model_name", ["latent", "state"])
def test_models_train_out_of_core_from_a_real_file(model_name, tmp_path, pbmc3k):
    """A backed AnnData trains the model from disk (no CountData in memory) and generates counts."""
    from exprflow.data.backed import BackedCounts
    from exprflow.models import MODELS

    small = pbmc3k[:300, :200].copy()
    small.write_h5ad(tmp_path / "pbmc_small.h5ad")
    backed = ad.read_h5ad(tmp_path / "pbmc_small.h5ad", backed="r")
    kwargs = {"vae": {"n_latent": 4, "n_hidden": 32}} if model_name == "latent" else {}
    model = MODELS.get(model_name)(backed, condition_key="cell_type", backbone_kwargs={"hidden": 32, "depth": 1},
                                   **kwargs)
    assert isinstance(model.data, BackedCounts)
    train = {"flow_steps": 3} if model_name == "latent" else {}
    model.train(max_steps=3, batch_size=32, progress_bar=False, **train)
    history = model.history["vae"] if model_name == "latent" else model.history["flow"]
    assert len(history) == 3 and np.isfinite(history["loss"]).all()
    out = model.generate(n_cells=20, n_steps=2)
    assert out.shape == (20, 200) and np.allclose(out.X.data, np.round(out.X.data))
    model.save(str(tmp_path / "model"))
    loaded = MODELS.get(model_name).load(str(tmp_path / "model"))
    assert (loaded.generate(n_cells=5, n_steps=2, seed=1).X != model.generate(n_cells=5, n_steps=2, seed=1).X).nnz == 0
    assert backed.isbacked and backed.shape == (300, 200)  # the user's backed AnnData is left as it was


def test_step_indexed_block_loader_covers_each_epoch_and_trains_with_fit_loader(adata_with_empty, h5ad_path):
    """The DDP/resume-aware variant: StepBatchSampler batches over a block-shuffled order, read block-wise."""
    from exprflow.data.block_shuffle import block_shuffled_order, block_step_loader
    from exprflow.training.fit import fit_loader
    from exprflow.training.plans import OptimConfig
    from exprflow.training.vae_plan import VAETrainingPlan
    from exprflow.representations.vae import CountVAE, VAEConfig

    order = block_shuffled_order(146, [0, 0], 16, 3)
    np.testing.assert_array_equal(np.sort(order), np.arange(146))
    assert not np.array_equal(order, block_shuffled_order(146, [0, 1], 16, 3))
    # a window of 3 blocks holds only rows of those 3 blocks (the locality that makes reads cheap)
    assert len(np.unique(order[:48] // 16)) == 3
    mem = prepare_counts(adata_with_empty, condition_key="cell_type")
    disk = prepare_backed_counts(h5ad_path, condition_key="cell_type")
    loader = block_step_loader(disk.X, disk.conditions, 12, seed=4, block_rows=16, buffer_blocks=3, drop_last=False)
    batches = list(loader)
    seen = np.concatenate([b["index"].numpy() for b in batches])
    np.testing.assert_array_equal(np.sort(seen), np.arange(146))
    for b in batches[:4]:
        np.testing.assert_array_equal(b["x"].numpy(), mem.X[b["index"].numpy()].toarray())
        np.testing.assert_array_equal(b["cond"].numpy(), mem.conditions[b["index"].numpy()])
    plan = VAETrainingPlan(CountVAE(40, VAEConfig(n_latent=3, n_hidden=16)), OptimConfig(warmup_steps=0))
    fit_loader(plan, disk.X.step_loader(None, 16, seed=1), max_epochs=None, max_steps=4, progress_bar=False)
    assert len(plan.history) == 4 and np.isfinite([h[1] for h in plan.history]).all()


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(case=anndatas(), use_condition=st.booleans())
def test_streaming_pass_gives_the_in_memory_result_or_the_same_error(tmp_path_factory, case, use_condition):
    """Random small matrices with defects (NaN, negative, fractions, empty cells; dense/CSR; X or a layer):
    the out-of-core pass agrees with prepare_counts, or both refuse with a clear error (CSC is refused on disk)."""
    adata, layer = case
    path = tmp_path_factory.mktemp("streamed") / "x.h5ad"
    adata.write_h5ad(path)
    key = "label" if use_condition else None
    in_memory = result_or_input_error(adata, lambda: prepare_counts(adata, layer=layer, condition_key=key))
    on_disk = result_or_input_error(adata, lambda: prepare_backed_counts(path, layer=layer, condition_key=key,
                                                                         chunk_rows=3))
    stored = adata.X if layer is None else adata.layers[layer]
    if sp.issparse(stored) and stored.format == "csc":
        assert on_disk is None
        return
    assert (in_memory is None) == (on_disk is None)
    if in_memory is not None:
        np.testing.assert_array_equal(on_disk.X[0 : on_disk.n_cells].toarray(), in_memory.X.toarray())
        np.testing.assert_array_equal(on_disk.kept, in_memory.kept)
        np.testing.assert_array_equal(on_disk.library_size, in_memory.library_size)
        assert on_disk.condition_levels == in_memory.condition_levels


def test_block_step_loader_resumes_exactly_after_a_crash(h5ad_path, tmp_path):
    """fit_loader's checkpoints work for out-of-core data: a run that crashes mid-epoch and resumes from its
    checkpoint ends with exactly the weights of an uninterrupted run (the block order is step-indexed)."""
    import lightning as L
    import torch

    from exprflow.models import StateFlow
    from exprflow.training.fit import fit_loader
    from exprflow.training.plans import FlowTrainingPlan

    class Crash(L.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            if trainer.global_step == 13:
                raise RuntimeError("simulated crash")

    def run(ckpt, crash=False, resume=False):
        torch.manual_seed(0)
        model = StateFlow(ad.read_h5ad(h5ad_path, backed="r"), backbone_kwargs={"hidden": 16, "depth": 1})
        plan = FlowTrainingPlan(model.backbone, model.objective, model.representation.encode, model.config.flow_optim, 0)
        loader = model.data.X.step_loader(None, 16, seed=3, block_rows=16, buffer_blocks=2)
        try:
            fit_loader(plan, loader, max_epochs=None, max_steps=20, seed=3, progress_bar=False, checkpoint_path=ckpt,
                       checkpoint_every=5, resume=resume, callbacks=[Crash()] if crash else [])
        except RuntimeError as exc:
            assert "simulated crash" in str(exc)
        return model.backbone.state_dict(), plan.history

    ref, ref_history = run(tmp_path / "ref.ckpt")
    run(tmp_path / "run.ckpt", crash=True)  # 146 cells / 16 = 9 steps per epoch: step 10 lies mid-epoch 2
    resumed, history = run(tmp_path / "run.ckpt", resume=True)
    assert all(torch.equal(ref[k], resumed[k]) for k in ref) and history == ref_history
