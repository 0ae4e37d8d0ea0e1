"""Per-combination evaluation and the held-out-combination scores."""

from __future__ import annotations

import numpy as np
import pytest
from condition_helpers import KEYS, make_two_attribute_adata

from exprflow.errors import ExprflowInputError
from exprflow.metrics.combinations import (
    combination_labels, combination_table, evaluate_combinations, hold_out_combination, score_against_hidden,
)


def test_labels_join_keys_and_leave_missing_out():
    adata = make_two_attribute_adata(n_cells=30)
    obs = adata.obs.copy()
    obs.loc[obs.index[0], "donor"] = np.nan
    labels = combination_labels(obs, KEYS)
    assert labels.isna().sum() == 1 and labels.iloc[1] == f"{obs['cell_type'].iloc[1]} | {obs['donor'].iloc[1]}"
    with pytest.raises(ExprflowInputError, match="batch"):
        combination_labels(obs, ["batch"])


def test_evaluate_combinations_scores_each_large_combination():
    train, test = make_two_attribute_adata(n_cells=600, seed=1), make_two_attribute_adata(n_cells=300, seed=2)
    wrong = test.copy()
    wrong.obs["donor"] = wrong.obs["donor"].map({"d1": "d2", "d2": "d1"}).astype("category")  # swapped donors
    good = evaluate_combinations(test, test, train, KEYS, seed=0)
    bad = evaluate_combinations(test, wrong, train, KEYS, seed=0)
    table = combination_table(good)
    assert set(table.columns) >= {"cell_type", "donor", "n_test", "energy", "floor", "ratio"}
    assert (table["n_test"] >= 20).all() and len(table) >= 4
    assert bad["metrics"]["energy"] > 3 * good["metrics"]["energy"]
    assert original_untouched(test)


def original_untouched(adata) -> bool:
    return "combination" not in adata.obs


def test_held_out_combination_scores_rank_candidates():
    adata = make_two_attribute_adata(n_cells=800, seed=3)
    kept, hidden = hold_out_combination(adata, {"cell_type": "type0", "donor": "d2"})
    assert (adata.obs["cell_type"].iloc[hidden] == "type0").all() and (adata.obs["donor"].iloc[hidden] == "d2").all()
    train = adata[kept]
    other_donor = train[(train.obs["cell_type"] == "type0").to_numpy() & (train.obs["donor"] == "d1").to_numpy()]
    other_type = train[(train.obs["cell_type"] == "type1").to_numpy() & (train.obs["donor"] == "d2").to_numpy()]
    scores = score_against_hidden(adata[hidden], {"other_donor": other_donor, "other_type": other_type}, train)
    assert scores["floor"]["energy"] < scores["other_donor"]["energy"] < scores["other_type"]["energy"]
    assert scores["other_type"]["energy_ratio"] > 1
    with pytest.raises(ExprflowInputError, match="No cell"):
        hold_out_combination(adata, {"cell_type": "type9"})
