"""plot_lfc: one panel per method, a PNG written, clear errors for mismatched inputs."""

import numpy as np
import pytest

from exprflow.errors import ExprflowInputError
from exprflow.plotting import plot_lfc


def test_plot_lfc_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    real = rng.normal(size=50)
    out = plot_lfc(real, {"good": real + 0.1 * rng.normal(size=50), "none": np.zeros(50)}, tmp_path / "lfc.png",
                   genes=np.arange(20), groups=["a"] * 10 + ["b"] * 10)
    assert out.exists() and out.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ExprflowInputError, match="values"):
        plot_lfc(real, {"short": real[:10]}, tmp_path / "x.png")
    with pytest.raises(ExprflowInputError, match="group label"):
        plot_lfc(real, {"good": real}, tmp_path / "x.png", genes=np.arange(5), groups=["a"])
