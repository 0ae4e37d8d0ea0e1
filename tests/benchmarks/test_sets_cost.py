"""The cost benchmark of the gene-set encoders (benchmarks/sets_cost.py): batch selection and a worker."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import sets_cost  # noqa: E402


def test_quantile_batches_follow_detected_genes():
    rng = np.random.default_rng(0)
    X = sp.random(400, 300, density=0.2, format="csr", random_state=0)
    X = sp.csr_matrix(X.multiply(rng.random((400, 1)) < 0.9))  # some cells much sparser
    batches = sets_cost.batches(X, 16)
    assert len(batches) == len(sets_cost.QUANTILES) and all(len(b) == 16 for b in batches)
    means = [np.diff(X[b].indptr).mean() for b in batches]
    assert means == sorted(means) and means[0] < means[-1]


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc/self/clear_refs")
def test_worker_measures_every_quantile_on_real_cells(monkeypatch, pbmc3k_path):
    monkeypatch.setitem(sets_cost.DATASETS, "pbmc3k", pbmc3k_path)
    rows = sets_cost.worker("pbmc3k", "deepsets_sparse", hidden=8, batch_size=8, repeats=1)
    assert [r["encoder"] for r in rows] == ["deepsets_sparse"] * len(sets_cost.QUANTILES)
    detected = [r["detected_mean"] for r in rows]
    assert detected == sorted(detected) and all(r["ms_per_batch"] > 0 for r in rows)
