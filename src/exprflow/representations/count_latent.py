"""``"count_vae"``: a count VAE's latent as the flow's representation (scVI, Lopez et al. 2018).

::

    fit      train the VAE on raw counts (NB / ZINB / Poisson decoder; the "vae" training phase), then
             standardise the train cells' states
    state    s = standardise([E q(z|x), log l])   (encoder means; with ``library_coordinate`` the cell's
             log library size is one more coordinate, so generated totals follow the cell state)
    flow     the flow trains on the means, or with ``posterior_draws = k`` on k draws z ~ q(z|x) per cell
             (the latents the decoder was trained on, rather than their centres)
    decode   (z, l) -> counts ~ p(x | z, l[, batch])   (or the decoder means); l is clipped to the
             train cells' range of library sizes

With ``n_batches > 0`` the encoder and decoder also read each cell's batch code (scVI's batch
correction). The same object serves ``LatentFlow``, ``PerturbationFlow``, ``PopulationFlow`` and
``TrajectoryFlow``: the VAE phase is written once, here.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
import torch

from exprflow.data import iter_dense_batches
from exprflow.errors import ExprflowInputError
from exprflow.representations.base import REPRESENTATIONS, Standardiser
from exprflow.representations.vae import CountVAE, VAEConfig

logger = logging.getLogger(__name__)


@REPRESENTATIONS.register("count_vae")
class CountLatent(Standardiser):
    """Count VAE latent means (plus log library size) as standardised flow states; see the module docstring.

    Parameters
    ----------
    n_genes
        Genes of the counts.
    config
        The VAE's architecture and objective (:class:`~exprflow.representations.vae.VAEConfig`).
    n_batches
        Batch levels the VAE reads (0: none).
    library_coordinate
        Whether the log library size is a coordinate of the state.
    posterior_draws
        0: :meth:`fit` returns the train cells' states at their encoder means; ``k > 0``: ``k`` draws
        ``z ~ q(z | x)`` per cell (draw-major: all cells' first draws, then the second ...).
    """

    is_counts = True

    def __init__(self, n_genes: int, config: VAEConfig = VAEConfig(), n_batches: int = 0,
                 library_coordinate: bool = True, posterior_draws: int = 0) -> None:
        if not isinstance(posterior_draws, int) or posterior_draws < 0:
            raise ExprflowInputError(
                f"posterior_draws must be an integer >= 0 (0: encoder means), got {posterior_draws!r}.")
        self.config, self.library_coordinate, self.posterior_draws = config, library_coordinate, posterior_draws
        self.vae = CountVAE(n_genes, config, n_batches)
        self.log_library_range: tuple[float, float] | None = None
        self.history: list = []

    @property
    def dim(self) -> int:
        return self.config.n_latent + int(self.library_coordinate)

    def fit(self, X: sp.csr_matrix, *, batches: np.ndarray | None = None, library: np.ndarray | None = None,
            optim=None, budget=None, trainer=None) -> np.ndarray:
        """Train the VAE (skipped when ``budget`` is None: weights copied from another model) and fit the
        standardisation; returns the standardised states of the train cells.

        ``optim``: :class:`~exprflow.training.plans.OptimConfig`; ``budget``: the phase's
        :class:`~exprflow.training.options.PhaseBudget`; ``trainer``: its
        :class:`~exprflow.training.options.TrainerOptions`.
        """
        if budget is not None:
            from exprflow.training.fit import fit_plan
            from exprflow.training.vae_plan import VAETrainingPlan

            logger.info("count VAE (%s likelihood, %d latent dims): %s cells", self.config.likelihood,
                        self.config.n_latent, budget.describe())
            plan = VAETrainingPlan(self.vae, optim)
            fit_plan(plan, X, batches, batch_size=budget.batch_size, max_epochs=budget.max_epochs,
                     max_steps=budget.max_steps, **trainer.fit_kwargs("vae"))
            self.history = list(plan.history)
        library = _library(X, library)
        log_lib = np.log(library)
        self.log_library_range = (float(log_lib.min()), float(log_lib.max()))
        mean, std = self.encode_posterior(X, batches)
        states = self._with_library(mean, X, library)
        if self.posterior_draws > 0:  # draw-major copies with z ~ q(z|x), the VAE's own posterior noise
            rng = np.random.default_rng(getattr(trainer, "seed", 0))
            states = np.repeat(states[None], self.posterior_draws, axis=0)
            n_latent = self.config.n_latent
            states[:, :, :n_latent] += std * rng.standard_normal(states[:, :, :n_latent].shape, dtype=np.float32)
            states = states.reshape(-1, states.shape[-1])
        return self.fit_standardise(states)

    @torch.no_grad()
    def encode_posterior(self, X: sp.csr_matrix, batches: np.ndarray | None = None,
                         batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of ``q(z | x)`` for the rows of ``X`` (float32, ``(n, n_latent)`` each)."""
        self.vae.eval()
        mean = np.empty((X.shape[0], self.config.n_latent), dtype=np.float32)
        std = np.empty_like(mean)
        for rows, block in iter_dense_batches(X, batch_size, shuffle=False):
            b = None if batches is None else torch.as_tensor(batches[rows])
            q_mu, q_logvar = self.vae.encode(torch.from_numpy(block), b)
            mean[rows], std[rows] = q_mu.numpy(), self.vae.posterior_std(q_mu, q_logvar).numpy()
        return mean, std

    def encode_means(self, X: sp.csr_matrix, batches: np.ndarray | None = None, batch_size: int = 1024) -> np.ndarray:
        """Encoder means ``E q(z | x)`` of the rows of ``X`` (float32, ``(n, n_latent)``)."""
        return self.encode_posterior(X, batches, batch_size)[0]

    def raw_states(self, X: sp.csr_matrix, *, batches: np.ndarray | None = None,
                   library: np.ndarray | None = None) -> np.ndarray:
        """Unstandardised states ``[E q(z|x), log l]`` (``log l`` only with ``library_coordinate``)."""
        return self._with_library(self.encode_means(X, batches), X, library)

    def _with_library(self, states: np.ndarray, X: sp.csr_matrix, library: np.ndarray | None) -> np.ndarray:
        if self.library_coordinate:
            states = np.concatenate([states, np.log(_library(X, library))[:, None].astype(np.float32)], axis=1)
        return states

    def encode(self, X: sp.csr_matrix, *, batches: np.ndarray | None = None,
               library: np.ndarray | None = None) -> np.ndarray:
        """Standardised states of the rows of ``X``."""
        return self.standardise(self.raw_states(X, batches=batches, library=library))

    def split(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Latent ``z`` and library sizes (None without ``library_coordinate``) of standardised states."""
        raw = np.asarray(s) * self.state_std + self.state_mean
        z = raw[:, : self.config.n_latent]
        if not self.library_coordinate:
            return z, None
        return z, np.exp(np.clip(raw[:, -1], *self.log_library_range))

    @torch.no_grad()
    def decode_latent(self, z: np.ndarray, library: np.ndarray, rng: np.random.Generator, *, sample: bool = True,
                      batches: np.ndarray | None = None) -> sp.csr_matrix:
        """Counts drawn from ``p(x | z, l[, batch])`` (exact, sparse) or, with ``sample=False``, decoder means."""
        self.vae.eval()
        b = None if batches is None else torch.as_tensor(batches, dtype=torch.long)
        z_t = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))
        lib_t = torch.from_numpy(np.asarray(library, dtype=np.float32))
        if sample:
            return self.vae.sample_counts_csr(z_t, lib_t, rng, batch=b)
        return sp.csr_matrix(self.vae.decode(z_t, lib_t, b).mean.numpy().astype(np.float32))

    def decode(self, s: np.ndarray, rng: np.random.Generator, *, sample: bool = True,
               batches: np.ndarray | None = None, library: np.ndarray | None = None) -> sp.csr_matrix:
        """Counts (or decoder means) of standardised states; ``library`` is required (and used) only
        without ``library_coordinate``."""
        z, lib = self.split(s)
        return self.decode_latent(z, lib if lib is not None else library, rng, sample=sample, batches=batches)

    def copy_from(self, other: CountLatent) -> None:
        """Take ``other``'s trained VAE weights (same genes and config), e.g. to compare flows on one VAE."""
        self.vae.load_state_dict(other.vae.state_dict())
        self.history = list(other.history)

    def state_dict(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """JSON-able fields and tensors to save (``vae.*`` weights; the standardisation as fields)."""
        fields = {"state_mean": self.state_mean.tolist(), "state_std": self.state_std.tolist(),
                  "log_library_range": list(self.log_library_range)}
        return fields, {f"vae.{k}": v for k, v in self.vae.state_dict().items()}

    def load_state_dict(self, fields: dict, tensors: dict[str, torch.Tensor]) -> CountLatent:
        from exprflow.persistence.restore import load_backbone_weights

        # (models saved by exprflow 0.1's TrajectoryFlow hold the standardisation as tensors)
        self.state_mean = np.asarray(fields.get("state_mean", tensors.get("state_mean")), dtype=np.float32)
        self.state_std = np.asarray(fields.get("state_std", tensors.get("state_std")), dtype=np.float32)
        self.log_library_range = tuple(fields["log_library_range"])
        load_backbone_weights(self.vae, {k: v for k, v in tensors.items() if k.startswith("vae.")}, "vae")
        return self


def _library(X: sp.csr_matrix, library: np.ndarray | None) -> np.ndarray:
    return np.asarray(X.sum(axis=1), dtype=np.float64).ravel() if library is None else np.asarray(library)
