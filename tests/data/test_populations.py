"""Populations of cells (exprflow.data.populations): what a drawn population is, and clear errors."""

import numpy as np
import pandas as pd
import pytest
import torch

from exprflow.data.populations import (
    PopulationDataset,
    PopulationSampler,
    population_composition,
    population_sampler,
)
from exprflow.errors import ExprflowInputError


@pytest.fixture
def obs():
    # group a: 60 cells (40 T, 20 B), group b: 30 cells (10 T, 20 B)
    groups = ["a"] * 60 + ["b"] * 30
    types = ["T"] * 40 + ["B"] * 20 + ["T"] * 10 + ["B"] * 20
    return pd.DataFrame({"sample": groups, "cell_type": pd.Categorical(types)}, index=[f"c{i}" for i in range(90)])


def test_subsets_are_distinct_cells_of_one_group(obs):
    sampler = population_sampler(obs, "sample", 25)
    idx, groups = sampler.draw_many(np.random.default_rng(0), 40)
    assert idx.shape == (40, 25) and groups.shape == (40,)
    codes = pd.factorize(obs["sample"], sort=True)[0]
    for rows, g in zip(idx, groups):
        assert len(np.unique(rows)) == 25  # without replacement
        assert (codes[rows] == g).all()
    # groups are drawn in proportion to their cells (60 : 30)
    many = sampler.draw_many(np.random.default_rng(1), 600)[1]
    assert abs(np.mean(many == 0) - 2 / 3) < 0.06


def test_draws_are_reproducible_and_a_group_can_be_fixed(obs):
    sampler = population_sampler(obs, "sample", 10)
    a = sampler.draw_many(np.random.default_rng(5), 3, group=1)
    b = sampler.draw_many(np.random.default_rng(5), 3, group=1)
    assert np.array_equal(a[0], b[0]) and (a[1] == 1).all()
    assert (a[0] >= 60).all()  # group b's rows


def test_a_group_smaller_than_n_is_a_clear_error_unless_bootstrapped(obs):
    with pytest.raises(ExprflowInputError, match="fewer cells than population_size=40"):
        population_sampler(obs, "sample", 40)
    idx, groups = population_sampler(obs, "sample", 40, replace=True).draw_many(np.random.default_rng(0), 20, group=1)
    assert idx.shape == (20, 40) and any(len(np.unique(r)) < 40 for r in idx)  # 40 of 30 cells: repeats


@pytest.mark.parametrize("bad,match", [
    ({"group_key": "donor"}, "not an obs column"),
    ({"composition_key": "type"}, "not an obs column"),
    ({"concentration": 5.0}, "needs cell-type labels"),
    ({"concentration": -1.0, "composition_key": "cell_type"}, "concentration must be > 0"),
    ({"population_size": 0}, "positive integer"),
])
def test_bad_options_are_clear_errors(obs, bad, match):
    kwargs = {"group_key": "sample", "population_size": 10, **bad}
    with pytest.raises(ExprflowInputError, match=match):
        population_sampler(obs, kwargs.pop("group_key"), kwargs.pop("population_size"), **kwargs)


def test_missing_group_values_are_an_error(obs):
    obs = obs.copy()
    obs.loc["c3", "sample"] = np.nan
    with pytest.raises(ExprflowInputError, match="1 missing value"):
        population_sampler(obs, "sample", 10)


def test_dirichlet_composition_varies_more_than_subsets_around_the_group_proportions(obs):
    types = pd.factorize(obs["cell_type"].astype(str), sort=True)[0]  # B = 0, T = 1
    plain = population_sampler(obs, "sample", 20)
    dirichlet = population_sampler(obs, "sample", 20, composition_key="cell_type", concentration=2.0)
    rng = np.random.default_rng(0)
    comp_plain = population_composition(types[plain.draw_many(rng, 400, group=0)[0]], 2)
    idx_d, _ = dirichlet.draw_many(rng, 400, group=0)
    comp_d = population_composition(types[idx_d], 2)
    assert (idx_d < 60).all()  # still cells of group a
    # mean composition: group a is 1/3 B; Dirichlet(2 * p) keeps the mean, inflates the spread
    assert abs(comp_d[:, 0].mean() - 1 / 3) < 0.05 and abs(comp_plain[:, 0].mean() - 1 / 3) < 0.03
    assert comp_d[:, 0].std() > 2 * comp_plain[:, 0].std()


def test_population_composition():
    comp = population_composition(np.array([[0, 0, 1, 2], [2, 2, 2, 2]]), 4)
    np.testing.assert_allclose(comp, [[0.5, 0.25, 0.25, 0.0], [0, 0, 1, 0]])
    with pytest.raises(ValueError):
        population_composition(np.arange(4), 4)


def test_population_dataset_items(obs):
    sampler = population_sampler(obs, "sample", 8)
    states = np.random.default_rng(0).normal(size=(90, 3)).astype(np.float32)
    ds = PopulationDataset(states, sampler, n_items=5, seed=3)
    item = ds[2]
    assert len(ds) == 5 and item["x"].shape == (8, 3) and item["x"].dtype == torch.float32
    assert torch.equal(ds[2]["x"], item["x"]) and item["cond"] in (0, 1)
    assert "cond" not in PopulationDataset(states, sampler, 5, conditional=False)[0]
    with pytest.raises(ValueError):
        PopulationDataset(states[:10], sampler, 5)


def test_sampler_needs_cells():
    with pytest.raises(ExprflowInputError, match="no cells"):
        PopulationSampler(np.zeros(0, dtype=np.int64), 4)
