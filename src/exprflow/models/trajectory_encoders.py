"""Latent spaces of :class:`~exprflow.models.trajectory_flow.TrajectoryFlow`, chosen by name.

Both map cells to *standardised* latent states ``s (n, d)`` (mean 0, sd 1 per coordinate on the train
cells) and back to expression values:

- ``"gaussian"`` (non-count data such as FPKM): ``y = log1p(x)``, a PCA of the centred train ``y``
  (``n_latent`` components), and a Gaussian decoder ``y ~ N(W s + mu, diag(sigma_g^2))`` whose
  per-gene variance ``sigma_g^2`` is the PCA's residual variance on the train cells (factor analysis
  with the PCA loadings); back to values by ``expm1(max(y, 0))``. ``decode="mean"`` drops the noise.
- ``"count_vae"`` (raw counts): the count VAE of :mod:`exprflow.representations.vae` (NB by default);
  the state is ``[E q(z|x), log library]``, so generated totals follow the cell state (as in
  ``LatentFlow``); decoding samples integer counts (or returns decoder means).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import scipy.sparse as sp
import torch

from exprflow.data import iter_dense_batches
from exprflow.training.fit import fit_plan
from exprflow.training.plans import OptimConfig
from exprflow.training.vae_plan import VAETrainingPlan
from exprflow.registry import Registry
from exprflow.representations.vae import CountVAE, VAEConfig

logger = logging.getLogger(__name__)

ENCODERS: Registry = Registry("trajectory representation")


class _Standardiser:
    """Per-coordinate standardisation of states, fitted on the train cells."""

    def fit_standardise(self, states: np.ndarray) -> np.ndarray:
        self.state_mean = states.mean(0)
        self.state_std = np.maximum(states.std(0), 1e-6)
        return self.standardise(states)

    def standardise(self, states: np.ndarray) -> np.ndarray:
        return ((states - self.state_mean) / self.state_std).astype(np.float32)

    def unstandardise(self, s: np.ndarray) -> np.ndarray:
        return s * self.state_std + self.state_mean


@ENCODERS.register("gaussian")
class GaussianPCA(_Standardiser):
    """log1p -> PCA latent with a diagonal Gaussian decoder (non-count data; see the module docstring)."""

    is_counts = False

    def __init__(self, n_genes: int, n_latent: int = 10, **_) -> None:
        self.n_genes, self.n_latent = n_genes, n_latent

    @property
    def dim(self) -> int:
        return self.n_latent

    def fit(self, X: sp.csr_matrix, *, seed: int = 0, **_) -> GaussianPCA:
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
        self.fit_standardise(scores)
        self.train_seconds = 0.0
        return self

    def encode(self, X: sp.csr_matrix) -> np.ndarray:
        y = np.log1p(X.toarray().astype(np.float64))
        return self.standardise((y - self.gene_mean) @ self.components.T)

    def decode(self, s: np.ndarray, rng: np.random.Generator, sample: bool = True) -> sp.csr_matrix:
        y = self.unstandardise(np.asarray(s, dtype=np.float64)) @ self.components + self.gene_mean
        if sample:
            y = y + rng.standard_normal(y.shape) * np.sqrt(self.residual_var)
        return sp.csr_matrix(np.expm1(np.maximum(y, 0.0)).astype(np.float32))

    def state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """JSON-able fields and tensors to save."""
        tensors = {k: torch.as_tensor(np.asarray(getattr(self, k), dtype=np.float64))
                   for k in ("gene_mean", "components", "residual_var", "state_mean", "state_std")}
        return {"n_latent": self.n_latent}, tensors

    def load(self, saved: dict, tensors: dict[str, torch.Tensor]) -> GaussianPCA:
        self.n_latent = int(saved["n_latent"])
        for k, v in tensors.items():
            setattr(self, k, v.numpy())
        return self


@ENCODERS.register("count_vae")
class CountVAELatent(_Standardiser):
    """Count VAE latent means plus log library size (raw counts; see the module docstring)."""

    is_counts = True

    def __init__(self, n_genes: int, n_latent: int = 10, likelihood: str = "nb") -> None:
        self.n_genes, self.n_latent = n_genes, n_latent
        self.vae = CountVAE(n_genes, VAEConfig(n_latent=n_latent, likelihood=likelihood))

    @property
    def dim(self) -> int:
        return self.n_latent + 1

    def fit(self, X: sp.csr_matrix, *, seed: int = 0, steps: int = 2000, batch_size: int = 128,
            optim: OptimConfig | None = None, **fit_kwargs) -> CountVAELatent:
        start = time.perf_counter()
        optim = optim or OptimConfig(lr=1e-3, weight_decay=1e-6, warmup_steps=0, min_lr_ratio=0.1, grad_clip=0.0)
        self.plan = VAETrainingPlan(self.vae, optim)
        logger.info("count VAE: %d steps", steps)
        fit_plan(self.plan, X, None, batch_size=batch_size, max_epochs=None, max_steps=steps, seed=seed, **fit_kwargs)
        library = np.asarray(X.sum(1)).ravel()
        log_lib = np.log(np.maximum(library, 1.0))
        self.log_library_range = (float(log_lib.min()), float(log_lib.max()))
        self.fit_standardise(self._raw_states(X))
        self.train_seconds = time.perf_counter() - start
        return self

    @torch.no_grad()
    def _raw_states(self, X: sp.csr_matrix) -> np.ndarray:
        self.vae.eval()
        out = np.empty((X.shape[0], self.dim), dtype=np.float64)
        for rows, block in iter_dense_batches(X, 1024, shuffle=False):
            out[rows, :-1] = self.vae.encode(torch.from_numpy(block))[0].numpy()
            out[rows, -1] = np.log(np.maximum(block.sum(1), 1.0))
        return out

    def encode(self, X: sp.csr_matrix) -> np.ndarray:
        return self.standardise(self._raw_states(X))

    @torch.no_grad()
    def decode(self, s: np.ndarray, rng: np.random.Generator, sample: bool = True) -> sp.csr_matrix:
        raw = self.unstandardise(np.asarray(s, dtype=np.float64))
        z = torch.as_tensor(raw[:, :-1], dtype=torch.float32)
        library = torch.as_tensor(np.exp(np.clip(raw[:, -1], *self.log_library_range)), dtype=torch.float32)
        self.vae.eval()
        px = self.vae.decode(z, library)
        if not sample:
            return sp.csr_matrix(px.mean.numpy().astype(np.float32))
        with torch.random.fork_rng():
            torch.manual_seed(int(rng.integers(2**31)))
            return sp.csr_matrix(px.sample().numpy().astype(np.int32))

    def state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        tensors = {f"vae.{k}": v for k, v in self.vae.state_dict().items()}
        tensors.update(state_mean=torch.as_tensor(self.state_mean), state_std=torch.as_tensor(self.state_std))
        return {"n_latent": self.n_latent, "likelihood": self.vae.config.likelihood,
                "log_library_range": list(self.log_library_range)}, tensors

    def load(self, saved: dict, tensors: dict[str, torch.Tensor]) -> CountVAELatent:
        self.vae.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("vae.")})
        self.state_mean, self.state_std = tensors["state_mean"].numpy(), tensors["state_std"].numpy()
        self.log_library_range = tuple(saved["log_library_range"])
        return self
