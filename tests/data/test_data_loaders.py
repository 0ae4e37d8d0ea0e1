"""Mini-batches densify one batch at a time and match the sparse rows."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from exprflow.data import CellDataset, iter_dense_batches, make_dataloader, prepare_counts
from exprflow.errors import ExprflowInputError


@pytest.fixture
def count_data(counts_adata):
    return prepare_counts(counts_adata, condition_key="cell_type")


@pytest.mark.parametrize("shuffle", [False, True])
def test_iter_dense_batches_match_sparse_rows(count_data, shuffle):
    X = count_data.X
    seen = []
    for rows, block in iter_dense_batches(X, 32, shuffle=shuffle, seed=0):
        assert block.dtype == np.float32 and block.shape == (rows.size, X.shape[1]) and rows.size <= 32
        np.testing.assert_array_equal(block, X[rows].toarray())
        seen.append(rows)
    order = np.concatenate(seen)
    assert [r.size for r in seen] == [32, 32, 32, 24]
    np.testing.assert_array_equal(np.sort(order), np.arange(X.shape[0]))
    assert np.array_equal(order, np.arange(X.shape[0])) != shuffle


def test_iter_dense_batches_densifies_per_batch(count_data, monkeypatch):
    calls = []
    real = sp.csr_matrix.toarray

    def spy(self, *args, **kwargs):
        calls.append(self.shape)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(sp.csr_matrix, "toarray", spy)
    list(iter_dense_batches(count_data.X, 50, shuffle=False))
    assert calls == [(50, 50), (50, 50), (20, 50)]  # never the whole 120 x 50 matrix


def test_iter_dense_batches_seeded():
    X = sp.random(40, 5, density=0.5, format="csr", random_state=0, dtype=np.float32)
    first = [r for r, _ in iter_dense_batches(X, 8, shuffle=True, seed=7)]
    again = [r for r, _ in iter_dense_batches(X, 8, shuffle=True, seed=7)]
    other = [r for r, _ in iter_dense_batches(X, 8, shuffle=True, seed=8)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))
    csc_rows, csc_block = next(iter_dense_batches(X.tocsc(), 8, shuffle=False))
    np.testing.assert_array_equal(csc_block, X[:8].toarray())
    with pytest.raises(ExprflowInputError, match="batch_size"):
        next(iter_dense_batches(X, 0, shuffle=False))


def test_dataloader_shapes_and_dtypes(count_data):
    loader = make_dataloader(count_data.X, count_data.conditions, batch_size=16, shuffle=True, seed=0, drop_last=True)
    batches = list(loader)
    assert len(batches) == 120 // 16
    for batch in batches:
        assert batch["x"].shape == (16, 50) and batch["x"].dtype == torch.float32
        assert batch["cond"].shape == (16,) and batch["cond"].dtype == torch.long
        assert batch["index"].dtype == torch.long
        idx = batch["index"].numpy()
        np.testing.assert_array_equal(batch["x"].numpy(), count_data.X[idx].toarray())
        np.testing.assert_array_equal(batch["cond"].numpy(), count_data.conditions[idx])


def test_dataloader_reproducible_and_unconditional(count_data):
    def order(seed):
        return torch.cat([b["index"] for b in make_dataloader(count_data, batch_size=32, shuffle=True, seed=seed)])

    assert torch.equal(order(3), order(3)) and not torch.equal(order(3), order(4))
    assert sorted(order(3).tolist()) == list(range(120))
    plain = make_dataloader(count_data.X, None, batch_size=50, shuffle=False)
    batches = list(plain)
    assert [b["x"].shape[0] for b in batches] == [50, 50, 20] and batches[0]["cond"] is None
    assert torch.equal(batches[0]["index"], torch.arange(50))


def test_cell_dataset(count_data):
    ds = CellDataset(count_data.X, count_data.conditions)
    assert len(ds) == 120 and ds[7] == 7
    batch = ds.collate([4, 2])
    assert batch["x"].shape == (2, 50) and batch["cond"].tolist() == count_data.conditions[[4, 2]].tolist()
    with pytest.raises(ExprflowInputError, match="one integer code per cell"):
        CellDataset(count_data.X, np.zeros(3, dtype=int))
