"""``"gaussian"``: a PCA latent with a diagonal Gaussian decoder, for non-count data (FPKM, log values).

``y = log1p(x)``, a PCA of the centred train ``y`` (``n_latent`` components), and a Gaussian decoder
``y ~ N(W s + mu, diag(sigma_g^2))`` whose per-gene variance ``sigma_g^2`` is the PCA's residual
variance on the train cells (factor analysis with the PCA loadings); back to values by
``expm1(max(y, 0))``. ``decode(sample=False)`` drops the noise. Computed in float64.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
import torch

from exprflow.representations.base import REPRESENTATIONS, Standardiser

logger = logging.getLogger(__name__)


@REPRESENTATIONS.register("gaussian")
class GaussianPCA(Standardiser):
    """log1p -> PCA latent with a diagonal Gaussian decoder (non-count data; see the module docstring)."""

    is_counts = False

    def __init__(self, n_genes: int, n_latent: int = 10) -> None:
        self.n_genes, self.n_latent = n_genes, n_latent
        self.history: list = []

    @property
    def dim(self) -> int:
        return self.n_latent

    def fit(self, X: sp.csr_matrix, **_) -> np.ndarray:
        """Fit the PCA and the standardisation on the train cells; returns their states (nothing trains)."""
        y = np.log1p(X.toarray().astype(np.float64))
        self.gene_mean = y.mean(0)
        yc = y - self.gene_mean
        k = min(self.n_latent, min(yc.shape) - 1)
        if k < self.n_latent:
            logger.warning("gaussian latent: %d components requested, %d possible; using %d", self.n_latent, k, k)
            self.n_latent = k
        _, _, vt = np.linalg.svd(yc, full_matrices=False)
        self.components = vt[:k]  # (k, G)
        scores = yc @ self.components.T
        self.residual_var = np.maximum((yc - scores @ self.components).var(0), 0.0)
        return self.fit_standardise(scores)

    def encode(self, X: sp.csr_matrix, **_) -> np.ndarray:
        y = np.log1p(X.toarray().astype(np.float64))
        return self.standardise((y - self.gene_mean) @ self.components.T)

    def decode(self, s: np.ndarray, rng: np.random.Generator, *, sample: bool = True, **_) -> sp.csr_matrix:
        y = self.unstandardise(np.asarray(s, dtype=np.float64)) @ self.components + self.gene_mean
        if sample:
            y = y + rng.standard_normal(y.shape) * np.sqrt(self.residual_var)
        return sp.csr_matrix(np.expm1(np.maximum(y, 0.0)).astype(np.float32))

    def state_dict(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """JSON-able fields and tensors to save."""
        tensors = {k: torch.as_tensor(np.asarray(getattr(self, k), dtype=np.float64))
                   for k in ("gene_mean", "components", "residual_var", "state_mean", "state_std")}
        return {"n_latent": self.n_latent}, tensors

    def load_state_dict(self, saved: dict, tensors: dict[str, torch.Tensor]) -> GaussianPCA:
        self.n_latent = int(saved["n_latent"])
        for k, v in tensors.items():
            setattr(self, k, v.numpy())
        return self

