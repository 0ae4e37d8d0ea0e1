"""Shared fixtures: a small synthetic count AnnData and the real datasets in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import pytest
import torch
from shared_data import shared_path
from synthetic import make_counts_adata

# One thread per test process: on a loaded 2-core machine two threads wait on each other and small
# models train several times slower.
torch.set_num_threads(1)


@pytest.fixture
def counts_adata() -> ad.AnnData:
    return make_counts_adata()


@pytest.fixture(scope="session")
def pbmc3k_path() -> Path:
    return shared_path("pbmc3k_counts.h5ad")


@pytest.fixture(scope="session")
def pbmc3k(pbmc3k_path) -> ad.AnnData:
    return ad.read_h5ad(pbmc3k_path)
