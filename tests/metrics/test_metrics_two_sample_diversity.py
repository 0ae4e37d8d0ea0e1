"""C2ST, coverage and dcr on point clouds with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from exprflow.metrics import c2st_knn, c2st_lr, coverage, dcr

rng = np.random.default_rng(0)
REAL = rng.normal(size=(300, 10))
SAME = rng.normal(size=(300, 10))
FAR = rng.normal(size=(300, 10)) + 10.0


@pytest.mark.parametrize("c2st", [c2st_knn, c2st_lr])
def test_c2st_near_half_for_same_distribution(c2st):
    assert c2st(REAL, SAME, seed=0) == pytest.approx(0.5, abs=0.08)


@pytest.mark.parametrize("c2st", [c2st_knn, c2st_lr])
def test_c2st_near_one_for_separated_sets(c2st):
    assert c2st(REAL, FAR, seed=0) > 0.99


def test_c2st_is_reproducible_with_seed():
    assert c2st_knn(REAL, SAME, seed=3) == c2st_knn(REAL, SAME, seed=3)


def test_coverage_one_when_generated_equals_real_and_zero_when_far():
    assert coverage(REAL, REAL) == 1.0
    assert coverage(REAL, FAR) < 0.02
    assert coverage(REAL, SAME) > 0.8


def test_coverage_low_for_mode_collapse():
    collapsed = np.zeros((300, 10)) + rng.normal(scale=0.01, size=(300, 10))
    assert coverage(REAL, collapsed) < 0.1


def test_dcr_flags_copies_of_train_cells():
    train = rng.normal(size=(1000, 10))
    copies = train[:300] + rng.normal(scale=1e-3, size=(300, 10))
    fresh = rng.normal(size=(300, 10))
    assert dcr(copies, REAL, train) < 0.2
    assert dcr(fresh, REAL, train) == pytest.approx(1.0, abs=0.1)
