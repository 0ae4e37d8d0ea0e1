"""Library-size model: how many counts a generated cell has.

A log-normal per condition level, fitted on the training cells' total counts
(``log L ~ N(mu_c, sigma_c^2)``), plus a pooled fit used for levels with fewer than
``min_cells`` training cells and for unconditional generation. Samples are truncated to the
observed training range of the level so that no cell gets an implausible total.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class LogNormalLibrary:
    """Per-condition log-normal model of library sizes (see module docstring)."""

    min_cells: int = 10
    params: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)
    pooled: tuple[float, float, float, float] | None = None

    @staticmethod
    def _fit_one(lib: np.ndarray) -> tuple[float, float, float, float]:
        log_lib = np.log(lib.astype(np.float64))
        return (float(log_lib.mean()), float(log_lib.std()), float(log_lib.min()), float(log_lib.max()))

    def fit(self, library: np.ndarray, conditions: np.ndarray | None = None) -> "LogNormalLibrary":
        """Fit on positive library sizes (one per training cell) and optional integer condition codes."""
        library = np.asarray(library, dtype=np.float64)
        if np.any(library <= 0):
            raise ValueError("library sizes must be positive (zero-count cells are dropped by the data layer)")
        self.pooled = self._fit_one(library)
        self.params = {}
        if conditions is not None:
            for code in np.unique(conditions):
                lib_c = library[conditions == code]
                if lib_c.size >= self.min_cells:
                    self.params[int(code)] = self._fit_one(lib_c)
        return self

    def sample(self, n: int, conditions: np.ndarray | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
        """Draw ``n`` library sizes (float64), per condition code when given."""
        if self.pooled is None:
            raise RuntimeError("LogNormalLibrary is not fitted")
        rng = rng or np.random.default_rng()
        out = np.empty(n, dtype=np.float64)
        codes = np.full(n, -1) if conditions is None else np.asarray(conditions)
        for code in np.unique(codes):
            mask = codes == code
            mu, sigma, lo, hi = self.params.get(int(code), self.pooled)
            out[mask] = np.exp(np.clip(rng.normal(mu, sigma, size=int(mask.sum())), lo, hi))
        return out

    def state_dict(self) -> dict:
        return {"min_cells": self.min_cells, "pooled": self.pooled, "params": {str(k): v for k, v in self.params.items()}}

    def load_state_dict(self, state: dict) -> "LogNormalLibrary":
        self.min_cells = int(state["min_cells"])
        self.pooled = tuple(state["pooled"])
        self.params = {int(k): tuple(v) for k, v in state["params"].items()}
        return self
