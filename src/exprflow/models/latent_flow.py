"""``LatentFlow``: rectified flow in the latent space of a count VAE (scVI-style, Lopez et al. 2018).

::

    phase 1  count VAE:  log1p-normalised counts -> z (n_latent) -> NB / ZINB / Poisson(rho(z) * l)
    phase 2  flow state  s = standardise([E q(z|x), log l])   (encoder means of the train cells, and
             the cell's log library size as one more coordinate, so totals follow the cell state)
             x0 ~ N(0, I);  v_theta(s_t, t, c) ~ s1 - s0   (any registered backbone, CFG by cond dropout)
    sample   integrate the flow -> (z, log l) -> counts ~ p(x | z, l)   (or the decoder mean on request)

With ``batch_key`` the count VAE's encoder and decoder also read the cell's batch (scVI style), so the
latent, and the flow on it, is batch-corrected; ``generate(batch=...)`` decodes every cell "as if
from" that batch, and without it each cell is decoded with a batch drawn from the training frequencies
(the batch marginalised).

With ``library="lognormal"`` the flow covers z only and the library size is drawn from a per-condition
log-normal fitted on the train cells (:class:`~exprflow.representations.LogNormalLibrary`).

Example::

    LatentFlow.setup_anndata(adata, layer="counts", condition_key="cell_type")
    model = LatentFlow(adata, vae={"likelihood": "zinb"})
    model.train()                       # VAE, then flow: two progress phases
    fake = model.generate(conditions={"B": 100, "NK": 50})
    z = model.get_latent_representation(adata)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData

from exprflow.data import prepare_counts
from exprflow.errors import ExprflowInputError
from exprflow.models.base import FlowModel
from exprflow.models.conditions import batch_codes
from exprflow.training.plans import OptimConfig
from exprflow.representations import LogNormalLibrary
from exprflow.representations.count_latent import CountLatent
from exprflow.representations.vae import VAEConfig
from exprflow.threads import thread_limit

logger = logging.getLogger(__name__)

LIBRARY_MODELS = ("flow", "lognormal")
DECODE_MODES = ("sample", "mean")


@dataclass(frozen=True)
class LatentFlowConfig:
    """Everything that defines a LatentFlow (saved as ``config.json``)."""

    vae: VAEConfig = VAEConfig()
    vae_optim: OptimConfig = OptimConfig(lr=1e-3, weight_decay=1e-6, warmup_steps=0, min_lr_ratio=0.1, grad_clip=0.0)
    backbone: str = "mlp"
    backbone_kwargs: dict | None = None  # None: the backbone's defaults (mlp: hidden 256, depth 3)
    time_sampler: str = "uniform"
    coupling: str = "independent"
    cond_dropout: float = 0.1
    flow_optim: OptimConfig = OptimConfig()
    library: str = "flow"
    decode: str = "sample"
    posterior_draws: int = 0  # 0: the flow learns the encoder means; k: k draws z ~ q(z|x) per train cell


#: the VAE phase's compute cap in gene-steps (steps x genes): 6,000 steps of 14,000 genes
VAE_GENE_STEPS = 8.4e7


def default_vae_steps(n_cells: int, n_genes: int, batch_size: int) -> int:
    """The VAE's default step budget: 400 epochs, at most 6,000 steps and at most ``8.4e7 / n_genes`` steps.

    400 epochs is scVI's default for fewer than 20,000 cells; 6,000 steps of 128 cells is where PBMC3k
    (2,000 genes) stops improving. A step's cost grows with the genes, so the cap on ``steps x genes``
    (:data:`VAE_GENE_STEPS`) bounds the phase's compute: about 10 CPU-minutes, 6,000 steps, on 14,000
    genes. It was set from the measured quality-vs-CPU-seconds trade-off (BENCHMARKS.md, section 1): on
    kang2018_ifnb the earlier cap (4e7, 2,846 steps) left energy at 8.5x the floor, 6,000 steps 2.2x,
    12,000 steps 1.7x at 3x the CPU-seconds.
    """
    steps_per_epoch = max(n_cells // max(min(batch_size, n_cells), 1), 1)
    return int(max(min(400 * steps_per_epoch, 6000, VAE_GENE_STEPS // max(n_genes, 1)), 1))


class LatentFlow(FlowModel):
    """Count VAE + rectified flow on its latent means; see the module docstring."""

    config_cls = LatentFlowConfig
    decode_modes = DECODE_MODES

    def __init__(self, adata: AnnData | str, layer: str | None = None, condition_key=None,
                 batch_key: str | None = None, **config) -> None:
        from exprflow.data import read_adata

        adata = read_adata(adata)
        self.batch_key, self._batch_source = batch_key, adata  # read once in _fit_representation
        try:
            super().__init__(adata, layer=layer, condition_key=condition_key, **config)
        finally:
            del self._batch_source

    # ------------------------------------------------------------------ set-up
    def _fit_representation(self) -> None:
        from exprflow.data.counts import drop_unused_levels
        from exprflow.data.validation import check_conditions

        self.batch_levels, self.train_batches = None, None
        if getattr(self, "batch_key", None) is not None:
            codes, levels = check_conditions(self._batch_source, self.batch_key)
            self.train_batches, self.batch_levels = drop_unused_levels(codes[self.data.kept], levels, self.batch_key)
        c = self.config
        if c.library not in LIBRARY_MODELS:
            raise ExprflowInputError(f"library must be one of {LIBRARY_MODELS}, got {c.library!r}.")
        if c.decode not in self.decode_modes:
            raise ExprflowInputError(f"decode must be one of {self.decode_modes}, got {c.decode!r}.")
        self.library = LogNormalLibrary().fit(self.data.library_size, self.train_codes)

    @property
    def state_dim(self) -> int:
        return self.representation.dim

    def _build_networks(self, n_conditions: int) -> None:
        self.representation = getattr(self, "_scvi", None) or CountLatent(
            len(self.var_names), self.config.vae, len(getattr(self, "batch_levels", None) or []),
            library_coordinate=self.config.library == "flow", posterior_draws=self._posterior_draws)
        self.backbone = self._make_backbone(self.state_dim)
        self.objective = self._objective()

    # the count VAE and the standardisation live in the representation (exprflow.representations.count_latent)
    vae = property(lambda self: self.representation.vae, doc="The count VAE (:class:`~exprflow.representations.vae.CountVAE`).")
    state_mean = property(lambda self: self.representation.state_mean)
    state_std = property(lambda self: self.representation.state_std)
    log_library_range = property(lambda self: self.representation.log_library_range)

    # ---------------------------------------------------------------- training
    @property
    def phases(self) -> tuple[str, ...]:
        """``("vae", "flow")``; ``("flow",)`` on a given scVI model's latent space (:meth:`from_scvi`)."""
        return ("flow",) if getattr(self, "_scvi", None) is not None else ("vae", "flow")

    @classmethod
    def from_scvi(cls, scvi_model, condition_key: str | None = None, **config) -> LatentFlow:
        """A LatentFlow on a trained scVI model's latent space: only the flow trains; counts come from scVI's
        decoder. See :func:`exprflow.models.scvi_flow.from_scvi` (needs ``exprflow[scvi]``)."""
        from exprflow.models.scvi_flow import from_scvi

        return from_scvi(cls, scvi_model, condition_key=condition_key, **config)

    def _budget_defaults(self) -> dict:
        n_cells, n_genes = self.data.n_cells, len(self.var_names)
        return {"vae_steps": lambda batch: default_vae_steps(n_cells, n_genes, batch), "flow_steps": 4000,
                "batch_size": 128, "flow_batch_size": 256}

    def _train_representation(self, budget, trainer, representation_from) -> None:
        """The VAE phase (or a copy of ``representation_from``'s VAE), then the flow's train states."""
        if representation_from is not None:
            other = getattr(representation_from, "representation", None)
            if (not isinstance(other, CountLatent) or representation_from.var_names != self.var_names
                    or other.config != self.config.vae or not representation_from.is_trained):
                raise ExprflowInputError("representation_from must be a trained model with a count VAE of the same "
                                         "genes and VAE config as this model.")
            self.representation.copy_from(other)
            budget = None
        self._train_states = self.representation.fit(
            self.data.X, batches=self.train_batches, library=self.data.library_size, optim=self.config.vae_optim,
            budget=budget, trainer=trainer)

    def _flow_data(self, budget, trainer):
        draws, codes = self._posterior_draws, self.train_codes  # draws > 1: draw-major copies of the cells
        return self._train_states, np.concatenate([codes] * draws) if draws > 1 and codes is not None else codes

    # LatentFlowConfig's option; PerturbationFlow shares these hooks with a config that has none
    _posterior_draws = property(lambda self: getattr(self.config, "posterior_draws", 0))

    def _phase_histories(self) -> dict:
        vae = {"vae": self.representation.history} if "vae" in self.phases else {}
        return {**vae, "flow": self.plan.history}

    def _encode_means(self, X: sp.csr_matrix, batch_size: int = 1024, batches: np.ndarray | None = None) -> np.ndarray:
        return self.representation.encode_means(X, batches, batch_size)

    # ------------------------------------------------------------ user API
    def get_latent_representation(self, adata: AnnData | None = None, layer: str | None = None,
                                  batch_size: int = 1024) -> np.ndarray:
        """Encoder means ``E q(z | x)`` of the cells of ``adata`` (default: the training cells).

        Parameters
        ----------
        adata
            Cells with the model's genes, in the model's order (never modified).
        layer
            Where ``adata`` holds its raw counts: a layer name, or ``"X"``. Default: the layer the model
            was trained on (``adata`` set up differently from the model is refused).
        batch_size
            Cells encoded at once.

        Returns
        -------
        numpy.ndarray
            ``(n_cells, n_latent)``, rows in ``adata``'s order (empty cells included).
        """
        X = self.read_counts(adata, layer) if adata is not None else None
        if X is None:
            if self.data is None:
                raise ExprflowInputError("Pass adata: a loaded model does not keep its training cells.")
            X, batches = self.data.X, self.train_batches
        else:
            batches = batch_codes(adata.obs, self.batch_key, self.batch_levels)
        return self._encode_means(X, batch_size, batches)

    def read_counts(self, adata: AnnData, layer: str | None = None) -> sp.csr_matrix:
        """Validated raw counts of every cell of ``adata`` (rows match ``adata``), from ``layer`` or the
        model's layer; see :meth:`get_latent_representation`."""
        from exprflow.persistence.restore import check_genes
        from exprflow.data.setup import read_layer

        check_genes(self.var_names, adata)
        layer = read_layer(self.setup, adata, type(self).__name__, layer)
        prepare_counts(adata, layer=layer, condition_key=None, require_counts=True)  # validates
        raw = adata.layers[layer] if layer else adata.X
        return sp.csr_matrix(raw, dtype=np.float32)  # every cell, empty ones included

    def get_normalized_expression(self, adata: AnnData | None = None, library_size: float | str = 1.0,
                                  layer: str | None = None, batch_size: int = 1024) -> pd.DataFrame:
        """Decoder means of each cell's latent state on a chosen library size (denoised expression).

        Parameters
        ----------
        adata
            Cells to read (default: the training cells; a loaded model needs ``adata``).
        library_size
            Total counts every cell is scaled to: ``1.0`` gives expression frequencies, ``1e4`` counts
            per 10,000; ``"observed"`` keeps each cell's own library size.
        layer
            Where ``adata`` holds its counts, as in :meth:`get_latent_representation`.
        batch_size
            Cells decoded at once.

        Returns
        -------
        pandas.DataFrame
            Cells x genes (index: cell names, columns: the model's genes) of ``E p(x | z, l)`` at
            ``z = E q(z | x)``.
        """
        X = self.read_counts(adata, layer) if adata is not None else None
        if X is None:
            if self.data is None:
                raise ExprflowInputError("Pass adata: a loaded model does not keep its training cells.")
            X, names, batches = self.data.X, list(self.data.obs_names), self.train_batches
        else:
            names = [str(n) for n in adata.obs_names]
            batches = batch_codes(adata.obs, self.batch_key, self.batch_levels)
        if isinstance(library_size, str):
            if library_size != "observed":
                raise ExprflowInputError(f"library_size must be a positive number or 'observed', got {library_size!r}.")
            library = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
            if np.any(library <= 0):
                raise ExprflowInputError(f"{int(np.sum(library <= 0))} cells have no counts: their observed library "
                                         "size is 0; give a number as library_size, or remove those cells.")
        elif not np.isfinite(library_size) or library_size <= 0:
            raise ExprflowInputError(f"library_size must be a positive number or 'observed', got {library_size!r}.")
        else:
            library = np.full(X.shape[0], float(library_size))
        z = self._encode_means(X, batch_size, batches)
        out = np.concatenate([self.decode(z[i : i + batch_size], library[i : i + batch_size], sample=False,
                                          batches=None if batches is None else batches[i : i + batch_size])
                              for i in range(0, len(z), batch_size)]) if len(z) else np.zeros((0, len(self.var_names)))
        return pd.DataFrame(out, index=names, columns=self.var_names)

    @torch.no_grad()
    def decode(self, z: np.ndarray, library: np.ndarray, sample: bool = True, seed: int = 0,
               batches: np.ndarray | None = None) -> np.ndarray:
        """Counts (``sample=True``) or decoder means for latents ``z`` (cells x n_latent) and library sizes
        (and, with a batch key, each cell's batch code)."""
        if getattr(self, "_scvi", None) is not None:  # scVI's decoder (from_scvi)
            return self._scvi.decode_latent(z, library, np.random.default_rng(seed), sample=sample).toarray()
        self.vae.eval()
        b = None if batches is None else torch.as_tensor(batches)
        px = self.vae.decode(torch.as_tensor(z, dtype=torch.float32), torch.as_tensor(library, dtype=torch.float32), b)
        if not sample:
            return px.mean.numpy()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return px.sample().numpy()

    # ---------------------------------------------------------- generation
    def generate(self, *args, decode: str | None = None, batch: str | None = None, **kwargs) -> AnnData:
        """As :meth:`FlowModel.generate`; ``decode="mean"`` returns decoder means instead of sampled counts.

        ``batch`` (models with a ``batch_key``): decode every cell as if from this batch; ``None`` draws
        each cell's batch from the training frequencies (``obs[batch_key]`` is then missing).
        """
        mode = decode or self.config.decode
        if mode not in DECODE_MODES:
            raise ExprflowInputError(f"decode must be one of {DECODE_MODES}, got {mode!r}.")
        if batch is not None and getattr(self, "batch_key", None) is None:
            raise ExprflowInputError("batch= needs a model trained with batch_key=.")
        self._decode_mode = mode
        self._decode_batch = None if batch is None else int(
            batch_codes(pd.DataFrame({self.batch_key: [batch]}), self.batch_key, self.batch_levels)[0])
        out = super().generate(*args, **kwargs)
        if getattr(self, "batch_key", None) is not None:
            out.obs[self.batch_key] = pd.Categorical([batch] * out.n_obs, categories=self.batch_levels)
        return out

    def _generate_chunk(self, codes, n, *, n_steps, solver, guidance, generator, rng) -> sp.csr_matrix:
        s, self._last_nfe = self.sample_states(codes, n, n_steps=n_steps, solver=solver, guidance=guidance,
                                               generator=generator)
        z, library = self.representation.split(s.numpy())
        if library is None:
            library = self.library.sample(n, codes, rng)
        mode = getattr(self, "_decode_mode", self.config.decode)
        batches = None
        if getattr(self, "batch_levels", None):
            fixed = getattr(self, "_decode_batch", None)
            freq = np.asarray(self.batch_frequencies, dtype=float)
            batches = np.full(n, fixed) if fixed is not None else rng.choice(len(freq), size=n, p=freq / freq.sum())
        with thread_limit(None):  # the decoder is wide work (genes)
            return self.representation.decode_latent(z, library, rng, sample=mode == "sample", batches=batches)

    # ---------------------------------------------------------- persistence
    def _extra_state(self) -> dict:
        return {
            "library": self.library.state_dict(), **self.representation.state_dict()[0],
            "vae_seconds": getattr(self, "vae_seconds", None),
            "batch_key": getattr(self, "batch_key", None), "batch_levels": getattr(self, "batch_levels", None),
            "batch_frequencies": None if getattr(self, "batch_levels", None) is None
            else self.batch_frequencies.tolist(),
        }

    @property
    def batch_frequencies(self) -> np.ndarray:
        """Training cells per batch (models with a ``batch_key``)."""
        saved = getattr(self, "_batch_frequencies", None)
        if saved is not None:
            return saved
        return np.bincount(self.train_batches, minlength=len(self.batch_levels))

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {**self.representation.state_dict()[1], **super()._tensors()}

    def _load_meta(self, saved: dict) -> None:
        self.batch_key, self.batch_levels = saved.get("batch_key"), saved.get("batch_levels")

    def _load_extra(self, saved: dict, tensors: dict[str, torch.Tensor]) -> None:
        from exprflow.persistence.restore import load_backbone_weights

        self.library = LogNormalLibrary().load_state_dict(saved["library"])
        self.vae_seconds = saved.get("vae_seconds")
        if self.batch_levels:
            self._batch_frequencies = np.asarray(saved["batch_frequencies"], dtype=np.int64)
        if "scvi_init" in saved:  # a flow on a user's scVI model (from_scvi)
            from exprflow.representations.scvi_latent import ScviLatent

            self.representation = self._scvi = ScviLatent.from_saved(saved, tensors)
        else:
            self.representation.load_state_dict(saved, tensors)
        load_backbone_weights(self.backbone, {k: v for k, v in tensors.items() if k.startswith(("backbone.", "ema."))},
                              "backbone")
