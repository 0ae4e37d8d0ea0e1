"""Real data: held-out pbmc3k cells used as 'generated' must score like the floor."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from exprflow.metrics import evaluate, format_report


@pytest.fixture(scope="module")
def pbmc_parts(pbmc3k):
    idx = np.arange(pbmc3k.n_obs)
    labels = pbmc3k.obs["cell_type"].to_numpy()
    train, test = train_test_split(idx, test_size=0.2, stratify=labels, random_state=0)
    train, held_out = train_test_split(train, test_size=0.25, stratify=labels[train], random_state=0)
    return pbmc3k[train].copy(), pbmc3k[test].copy(), pbmc3k[held_out].copy()


def test_held_out_real_cells_score_like_the_floor(pbmc_parts):
    train, test, held_out = pbmc_parts
    result = evaluate(test, held_out, train)
    json.dumps(result, allow_nan=False)
    ratios = result["ratio_to_floor"]
    assert 0.9 < ratios["w2"] < 1.1
    assert 0.6 < ratios["mmd"] < 1.6
    assert 0.6 < ratios["energy"] < 1.6
    assert 0.9 < ratios["coverage"] < 1.1
    for row in ("metrics", "floor"):
        assert abs(result[row]["c2st_knn"] - 0.5) < 0.1
        assert abs(result[row]["c2st_lr"] - 0.5) < 0.1
        assert 0.9 < result[row]["dcr"] < 1.1
        assert result[row]["pearson_mean"] > 0.98 and result[row]["pearson_var"] > 0.95


def test_conditional_pbmc3k(pbmc_parts):
    train, test, held_out = pbmc_parts
    result = evaluate(test, held_out, train, condition_key="cell_type")
    json.dumps(result, allow_nan=False)
    assert 7 <= len(result["per_condition"]) <= 9  # DC and Platelet have < 20 test cells
    assert abs(result["metrics"]["label_accuracy"] - result["floor"]["label_accuracy"]) < 0.05
    assert 0.9 < result["ratio_to_floor"]["w2"] < 1.1
    assert "Per condition" in format_report(result)
