"""The perturbation baselines behind one interface (BASELINES): closed forms on a toy with two cell types."""

import numpy as np
import pytest
from synthetic import make_perturbation_arms

from exprflow.commands.perturbation import BASELINE_NAMES
from exprflow.errors import ExprflowInputError
from exprflow.metrics.reference import normalise_rows
from exprflow.models.perturbation_baselines import BASELINES, MeanShift, NoChange, TrainMean
from exprflow.models.perturbation_linear import RidgeBaseline

KEYS = dict(condition_key="condition", control_group="ctrl", cell_type_key="cell_type")


def _toy(n_types=3, seed=2):
    return make_perturbation_arms(n_types, seed)


def _per_type(both, arm):
    y = normalise_rows(both.X).toarray()
    rows = (both.obs["condition"] == arm).to_numpy()
    types = both.obs["cell_type"].to_numpy()
    return {t: y[rows & (types == t)].mean(0) for t in sorted(set(types))}


def test_registry_is_what_the_cli_offers():
    assert sorted(BASELINE_NAMES) == BASELINES.names()
    assert BASELINES.get("ridge") is RidgeBaseline and BASELINES.get("train_mean") is TrainMean


def test_no_change_returns_the_control_counts():
    both, ctrl = _toy()
    pred = NoChange().fit(both, **KEYS).predict(ctrl, "stim")
    assert (pred != ctrl.X).nnz == 0 and np.issubdtype(pred.dtype, np.integer)
    with pytest.raises(ExprflowInputError, match="Unknown perturbation"):
        NoChange().fit(both, **KEYS).predict(ctrl, "ko")


def test_train_mean_is_the_balanced_mean_of_perturbed_cells():
    both, ctrl = _toy()
    method = TrainMean().fit(both, **KEYS)
    expected = np.mean(list(_per_type(both, "stim").values()), axis=0)
    pred = method.predict_normalised(ctrl, "stim")
    assert pred.shape == ctrl.shape and np.allclose(pred, expected[None, :])
    out = method.predict_adata(ctrl, "stim", seed=0)
    assert (out.obs["condition"] == "stim").all() and out.uns["exprflow"]["model"] == "train_mean"
    assert list(out.obs["control_cell"]) == list(ctrl.obs_names)


def test_ridge_reproduces_training_responses_and_tends_to_the_mean_shift():
    both, ctrl = _toy()
    ctrl_means, stim_means = _per_type(both, "ctrl"), _per_type(both, "stim")
    exact = RidgeBaseline(n_components=50, ridge_lambda=0.0).fit(both, **KEYS)
    for t in ctrl_means:  # full gene basis, no penalty: each training type's own response
        assert np.allclose(exact.response(ctrl_means[t], "stim"), stim_means[t] - ctrl_means[t], atol=1e-8)
    shift = MeanShift().fit(both, **KEYS)
    heavy = RidgeBaseline(ridge_lambda=1e12).fit(both, **KEYS)
    assert np.allclose(heavy.predict_normalised(ctrl, "stim"), shift.predict_normalised(ctrl, "stim"), atol=1e-6)
    assert not np.allclose(exact.predict_normalised(ctrl, "stim"), shift.predict_normalised(ctrl, "stim"), atol=1e-3)


def test_ridge_needs_cell_types():
    both, _ = _toy()
    with pytest.raises(ExprflowInputError, match="cell_type_key"):
        RidgeBaseline().fit(both, condition_key="condition", control_group="ctrl")
    with pytest.raises(ExprflowInputError, match="n_components"):
        RidgeBaseline(n_components=0)
