"""State-vector representation: a cell is one point in gene space.

Forward (counts -> state)::

    y = log1p(counts / library * target_sum)        # library = total counts of the cell
    x = (y - mean_g) / std_g                         # optional per-gene standardisation (train statistics)

Backward (state -> counts) is documented in :mod:`exprflow.representations.counts`.

Per-gene standardisation matters: with one global scale, highly expressed genes dominate the flow's
squared-error objective and lowly expressed genes are generated as noise. The statistics are fitted on
the cells the model trains on (the train split), never on test cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

_MIN_STD = 1e-3


def log_normalise(counts: np.ndarray | sp.spmatrix, target_sum: float = 1e4, is_counts: bool = True) -> np.ndarray:
    """``log1p(counts / library * target_sum)`` as dense float32 (``log1p`` only when ``is_counts`` is False).

    Cells with zero library give zeros (callers drop them beforehand; see the data layer).
    """
    dense = counts.toarray() if sp.issparse(counts) else np.asarray(counts)
    dense = dense.astype(np.float32, copy=True)
    if is_counts:
        library = dense.sum(axis=1, keepdims=True)
        np.divide(dense * target_sum, library, out=dense, where=library > 0)
    return np.log1p(dense, out=dense)


@dataclass(frozen=True)
class StateVectorConfig:
    """Options of the state-vector representation."""

    target_sum: float = 1e4
    standardize: bool = True
    clip: bool = True  # clip generated log1p values to [0, train max] per gene when decoding


class StateVector:
    """Maps count rows to standardised log1p state vectors and back.

    Fit with :meth:`fit` on the training matrix (chunked: a sparse matrix is never densified whole).
    """

    def __init__(self, config: StateVectorConfig = StateVectorConfig(), is_counts: bool = True) -> None:
        self.config = config
        self.is_counts = is_counts
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.max: np.ndarray | None = None

    def fit(self, X: sp.spmatrix | np.ndarray, chunk_size: int = 4096) -> "StateVector":
        """Per-gene mean, standard deviation and maximum of log1p-normalised values of ``X``."""
        n, g = X.shape
        s1 = np.zeros(g, dtype=np.float64)
        s2 = np.zeros(g, dtype=np.float64)
        mx = np.zeros(g, dtype=np.float64)
        for start in range(0, n, chunk_size):
            y = log_normalise(X[start : start + chunk_size], self.config.target_sum, self.is_counts).astype(np.float64)
            s1 += y.sum(0)
            s2 += (y * y).sum(0)
            mx = np.maximum(mx, y.max(0))
        mean = s1 / n
        var = np.maximum(s2 / n - mean * mean, 0.0)
        self.mean = mean.astype(np.float32)
        self.std = np.maximum(np.sqrt(var), _MIN_STD).astype(np.float32)
        self.max = mx.astype(np.float32)
        return self

    def _check_fitted(self) -> None:
        if self.mean is None:
            raise RuntimeError("StateVector is not fitted: call fit(X_train) first")

    def encode(self, counts: np.ndarray | sp.spmatrix | Tensor) -> Tensor:
        """Count rows ``(B, G)`` -> state vectors ``(B, G)`` (float32 tensor, on the input's device)."""
        self._check_fitted()
        if not isinstance(counts, Tensor):
            counts = torch.from_numpy(log_normalise(counts, self.config.target_sum, self.is_counts))
        else:
            counts = counts.float()
            if self.is_counts:
                library = counts.sum(dim=1, keepdim=True).clamp_min(1e-12)
                counts = counts * (self.config.target_sum / library)
            counts = torch.log1p(counts)
        if self.config.standardize:
            mean = torch.as_tensor(self.mean, device=counts.device)
            std = torch.as_tensor(self.std, device=counts.device)
            counts = (counts - mean) / std
        return counts.contiguous()

    def decode_log1p(self, x: Tensor) -> np.ndarray:
        """State vectors -> log1p-normalised expression (un-standardised, clipped to [0, train max])."""
        self._check_fitted()
        y = x.detach().cpu().numpy().astype(np.float32)
        if self.config.standardize:
            y = y * self.std + self.mean
        if self.config.clip:
            y = np.clip(y, 0.0, self.max)
        else:
            y = np.maximum(y, 0.0)
        return y

    def state_dict(self) -> dict:
        """Fitted statistics as plain lists (JSON-serialisable)."""
        self._check_fitted()
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "max": self.max.tolist(),
                "is_counts": self.is_counts}

    def load_state_dict(self, state: dict) -> "StateVector":
        self.mean = np.asarray(state["mean"], dtype=np.float32)
        self.std = np.asarray(state["std"], dtype=np.float32)
        self.max = np.asarray(state["max"], dtype=np.float32)
        self.is_counts = bool(state.get("is_counts", True))  # older files: count models only
        return self
