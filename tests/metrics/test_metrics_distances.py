"""Closed-form and brute-force checks of w2, mmd and energy."""

from __future__ import annotations

import numpy as np
import pytest

from exprflow.metrics import energy, mmd, w2


@pytest.fixture
def cloud() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(60, 5))


def test_w2_of_a_shift_is_the_norm_of_the_shift(cloud):
    shift = np.array([3.0, -1.0, 0.5, 0.0, 2.0])
    assert w2(cloud, cloud + shift) == pytest.approx(np.linalg.norm(shift), rel=1e-9)


def test_w2_zero_for_identical_sets_and_symmetric(cloud):
    other = np.random.default_rng(1).normal(size=(60, 5))
    assert w2(cloud, cloud) == pytest.approx(0.0, abs=1e-9)
    assert w2(cloud, other) == pytest.approx(w2(other, cloud), rel=1e-9)


def test_w2_unequal_sizes_uses_uniform_weights():
    x = np.zeros((2, 1))
    y = np.array([[1.0], [1.0], [1.0]])
    assert w2(x, y) == pytest.approx(1.0)


@pytest.mark.parametrize("metric", [mmd, energy])
def test_zero_for_identical_sets_and_grows_with_shift(metric, cloud):
    assert metric(cloud, cloud) == pytest.approx(0.0, abs=1e-12)
    values = [metric(cloud, cloud + s) for s in (0.5, 1.0, 2.0, 4.0)]
    assert all(a < b for a, b in zip(values, values[1:]))
    assert values[0] > 0


def test_energy_matches_brute_force():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(7, 3)), rng.normal(1.0, 2.0, size=(5, 3))

    def mean_dist(a, b):
        return np.mean([[np.linalg.norm(ai - bj) for bj in b] for ai in a])

    expected = 2 * mean_dist(x, y) - mean_dist(x, x) - mean_dist(y, y)
    assert energy(x, y) == pytest.approx(expected, rel=1e-12)


def test_mmd_matches_brute_force():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(6, 2)), rng.normal(0.5, 1.0, size=(4, 2))

    def k(a, b):
        d = np.sum((a - b) ** 2)
        return sum(np.exp(-d / (2 * s**2)) for s in (0.1, 1.0, 10.0, 100.0))

    def mean_k(a, b):
        return np.mean([[k(ai, bj) for bj in b] for ai in a])

    expected = mean_k(x, x) + mean_k(y, y) - 2 * mean_k(x, y)
    assert mmd(x, y) == pytest.approx(expected, rel=1e-10)
