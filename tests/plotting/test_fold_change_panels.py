"""fold_change_panels: one panel per method, a PNG written, clear errors for mismatched inputs."""

import numpy as np
import pytest

import exprflow as ef
from exprflow.errors import ExprflowInputError


def test_fold_change_panels_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    real = rng.normal(size=50)
    fig = ef.pl.fold_change_panels(real, {"good": real + 0.1 * rng.normal(size=50), "none": np.zeros(50)},
                                   genes=np.arange(20), groups=["a"] * 10 + ["b"] * 10, save=tmp_path / "lfc.png")
    assert len(fig.axes) == 2 and "r = 0.99" in fig.axes[0].get_title()
    assert (tmp_path / "lfc.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ExprflowInputError, match="values"):
        ef.pl.fold_change_panels(real, {"short": real[:10]}, save=tmp_path / "x.png")
    with pytest.raises(ExprflowInputError, match="groups= label"):
        ef.pl.fold_change_panels(real, {"good": real}, genes=np.arange(5), groups=["a"], save=tmp_path / "x.png")
