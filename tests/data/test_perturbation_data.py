"""Perturbation fields of the data layer: condition_key + control_group (+ cell_type_key) validation."""

import numpy as np
import pandas as pd
import pytest
from synthetic import make_counts_adata

from exprflow.data.perturbation import pair_groups, prepare_perturbation
from exprflow.errors import ExprflowInputError


def _perturbation_adata(seed: int = 0):
    adata = make_counts_adata(n_cells=90, n_genes=20, n_types=3, seed=seed)
    adata.obs["condition"] = pd.Categorical(np.where(np.arange(90) % 2 == 0, "ctrl", "stim"))
    return adata


def test_prepare_perturbation_codes_and_groups():
    adata = _perturbation_adata()
    data = prepare_perturbation(adata, condition_key="condition", control_group="ctrl", cell_type_key="cell_type")
    assert data.control_group == "ctrl" and data.perturbations == ["stim"]
    assert np.array_equal(data.is_control, adata.obs["condition"].to_numpy() == "ctrl")
    assert set(data.perturbation_codes()) == {-1, 0}
    groups = pair_groups(data)
    # one group per cell type (x 1 perturbation); every group's controls share its cell type
    assert len(groups.controls) == 3
    for g, rows in enumerate(groups.controls):
        members = np.flatnonzero(groups.group == g)
        assert data.is_control[rows].all() and not data.is_control[members].any()
        assert len(set(data.cell_types[rows]) | set(data.cell_types[members])) == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"condition_key": None, "control_group": "ctrl"}, "needs condition_key"),
        ({"condition_key": "nope", "control_group": "ctrl"}, "not a column"),
        ({"condition_key": "condition", "control_group": None}, "needs control_group"),
        ({"condition_key": "condition", "control_group": "control"}, r"not a level.*'ctrl', 'stim'"),
        ({"condition_key": "condition", "control_group": "ctrl", "cell_type_key": "nope"}, "cell_type_key 'nope'"),
    ],
)
def test_clear_errors(kwargs, message):
    with pytest.raises(ExprflowInputError, match=message):
        prepare_perturbation(_perturbation_adata(), **kwargs)


def test_single_condition_level_is_an_error():
    adata = _perturbation_adata()
    adata.obs["condition"] = "ctrl"
    with pytest.raises(ExprflowInputError, match="single level"):
        prepare_perturbation(adata, condition_key="condition", control_group="ctrl")


def test_missing_cell_type_labels_name_the_arm():
    adata = _perturbation_adata()
    labels = adata.obs["cell_type"].astype(object)
    labels[adata.obs["condition"] == "stim"] = np.nan  # kang2018_ifnb: labels on control cells only
    adata.obs["cell_type"] = labels
    with pytest.raises(ExprflowInputError, match=r"missing for 45 cells \(conditions \['stim'\]\)"):
        prepare_perturbation(adata, condition_key="condition", control_group="ctrl", cell_type_key="cell_type")


def test_perturbed_type_without_controls_is_left_out():
    adata = _perturbation_adata()
    keep = ~((adata.obs["cell_type"] == "type0") & (adata.obs["condition"] == "ctrl")).to_numpy()
    data = prepare_perturbation(adata[keep], condition_key="condition", control_group="ctrl",
                                cell_type_key="cell_type")
    groups = pair_groups(data)
    type0 = data.cell_type_levels.index("type0")
    assert (groups.group[data.cell_types == type0] == -1).all() and len(groups.controls) == 2


def test_adata_untouched():
    adata = _perturbation_adata()
    before = (adata.X.copy(), adata.obs.copy())
    prepare_perturbation(adata, condition_key="condition", control_group="ctrl", cell_type_key="cell_type")
    assert (adata.X != before[0]).nnz == 0 and adata.obs.equals(before[1]) and not adata.uns
