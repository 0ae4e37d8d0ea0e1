"""``"scvi"``: the latent space of a user's trained scVI model (scvi-tools; Lopez et al. 2018) as the
flow's representation.

The scVI model is used as it is, never trained again: the state of a cell is ``standardise([E q(z|x),
log l])`` from scVI's encoder, and counts are drawn from scVI's decoder ``p(x | z, l)`` (its NB / ZINB /
Poisson likelihood) at the flow's library size. ``LatentFlow.from_scvi`` builds a LatentFlow on it, so
only the flow trains. Needs the optional extra ``pip install "exprflow[scvi]"``.

Scope: scVI models without covariates (no ``batch_key``, ``categorical_covariate_keys`` or
``continuous_covariate_keys``) with the observed library size (scVI's default); others are refused
clearly. Saving keeps scVI's weights and ``SCVI(...)`` options in the exprflow model directory, and
loading rebuilds the scVI module from them (no AnnData needed).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from exprflow.data import iter_dense_batches
from exprflow.errors import ExprflowInputError
from exprflow.representations.base import REPRESENTATIONS, Standardiser


def import_scvi():
    """``scvi`` (scvi-tools), or a clear error naming the extra to install."""
    try:
        import scvi
    except ImportError:
        raise ExprflowInputError('This needs scvi-tools: pip install "exprflow[scvi]" (or pip install scvi-tools).') from None
    return scvi


def check_scvi_model(scvi_model) -> None:
    """Refuse scVI models this representation does not cover (see the module docstring)."""
    stats = scvi_model.summary_stats
    extra = {"batch": stats.get("n_batch", 1) > 1, "categorical covariates": stats.get("n_extra_categorical_covs", 0),
             "continuous covariates": stats.get("n_extra_continuous_covs", 0)}
    used = [name for name, present in extra.items() if present]
    if used:
        raise ExprflowInputError(f"from_scvi takes scVI models without covariates; this one has {', '.join(used)}. "
                                 "Train scVI without them, or use LatentFlow(adata, batch_key=...) for batches.")
    if not getattr(scvi_model.module, "use_observed_lib_size", True):
        raise ExprflowInputError("from_scvi needs an scVI model with use_observed_lib_size=True (scVI's default).")
    if not scvi_model.is_trained:
        raise ExprflowInputError("The scVI model is not trained: call its train() first.")


@REPRESENTATIONS.register("scvi")
class ScviLatent(Standardiser):
    """A trained scVI model's encoder means plus log library size as standardised flow states.

    Parameters
    ----------
    scvi_model
        A trained ``scvi.model.SCVI`` (see the module docstring for what it may contain).
    """

    is_counts = True
    library_coordinate = True

    def __init__(self, scvi_model) -> None:
        check_scvi_model(scvi_model)
        self.scvi_model = scvi_model
        self.module = scvi_model.module
        self.n_latent = int(self.module.n_latent)
        self.log_library_range: tuple[float, float] | None = None
        self.history: list = []

    @property
    def dim(self) -> int:
        return self.n_latent + 1

    @property
    def var_names(self) -> list[str]:
        return [str(v) for v in self.scvi_model.adata_manager.get_state_registry("X").get("column_names",
                                                                                    self.scvi_model.adata.var_names)]

    def fit(self, X: sp.csr_matrix, *, library: np.ndarray | None = None, **_) -> np.ndarray:
        """Nothing trains (scVI is used as it is): fits the standardisation on the train cells' states."""
        library = np.asarray(X.sum(axis=1), dtype=np.float64).ravel() if library is None else np.asarray(library)
        log_lib = np.log(library)
        self.log_library_range = (float(log_lib.min()), float(log_lib.max()))
        return self.fit_standardise(self.raw_states(X, library))

    @torch.no_grad()
    def raw_states(self, X: sp.csr_matrix, library: np.ndarray | None = None) -> np.ndarray:
        """``[E q(z|x), log l]`` from scVI's encoder (float32)."""
        self.module.eval()
        out = np.empty((X.shape[0], self.dim), dtype=np.float32)
        for rows, block in iter_dense_batches(X, 1024, shuffle=False):
            x = torch.from_numpy(block)
            qz = self.module.inference(x=x, batch_index=torch.zeros(len(rows), 1))["qz"]
            out[rows, :-1] = qz.loc.numpy()
            out[rows, -1] = np.log(block.sum(1) if library is None else library[rows])
        return out

    def encode_means(self, X: sp.csr_matrix, batches=None, batch_size: int = 1024) -> np.ndarray:
        """scVI's encoder means ``E q(z | x)`` of the rows of ``X``."""
        return self.raw_states(X)[:, :-1]

    def encode(self, X: sp.csr_matrix, *, library: np.ndarray | None = None, **_) -> np.ndarray:
        return self.standardise(self.raw_states(X, library))

    def split(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raw = np.asarray(s) * self.state_std + self.state_mean
        return raw[:, : self.n_latent], np.exp(np.clip(raw[:, -1], *self.log_library_range))

    @torch.no_grad()
    def decode_latent(self, z: np.ndarray, library: np.ndarray, rng: np.random.Generator, *, sample: bool = True,
                      batches=None) -> sp.csr_matrix:
        """Counts from scVI's decoder ``p(x | z, l)`` (``sample=False``: its means)."""
        self.module.eval()
        parts = []
        with torch.random.fork_rng():
            torch.manual_seed(int(rng.integers(2**63)))
            for lo in range(0, len(z), 1024):
                zt = torch.as_tensor(np.asarray(z[lo: lo + 1024]), dtype=torch.float32)
                log_l = torch.as_tensor(np.log(np.asarray(library[lo: lo + 1024])), dtype=torch.float32)[:, None]
                px = self.module.generative(z=zt, library=log_l, batch_index=torch.zeros(len(zt), 1))["px"]
                values = px.sample() if sample else px.mean
                parts.append(sp.csr_matrix(values.numpy().astype(np.float32)))
        return sp.vstack(parts).tocsr() if parts else sp.csr_matrix((0, len(self.var_names)), dtype=np.float32)

    def decode(self, s: np.ndarray, rng: np.random.Generator, *, sample: bool = True, **_) -> sp.csr_matrix:
        z, library = self.split(s)
        return self.decode_latent(z, library, rng, sample=sample)

    def state_dict(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """The standardisation, scVI's ``SCVI(...)`` options and genes (fields) and its module's weights."""
        scvi = import_scvi()
        fields = {"state_mean": self.state_mean.tolist(), "state_std": self.state_std.tolist(),
                  "log_library_range": list(self.log_library_range), "scvi_version": scvi.__version__,
                  "scvi_init": self.scvi_model.init_params_["non_kwargs"], "scvi_var_names": self.var_names}
        return fields, {f"scvi.{k}": v for k, v in self.module.state_dict().items()}

    @classmethod
    def from_saved(cls, fields: dict, tensors: dict[str, torch.Tensor]) -> ScviLatent:
        """Rebuild the scVI model from saved options and weights (on a placeholder AnnData of its genes)."""
        import anndata as ad
        import pandas as pd

        scvi = import_scvi()
        genes = fields["scvi_var_names"]
        placeholder = ad.AnnData(sp.csr_matrix(np.ones((2, len(genes)), dtype=np.float32)),
                                 var=pd.DataFrame(index=pd.Index(genes, dtype=object)))
        scvi.model.SCVI.setup_anndata(placeholder)
        model = scvi.model.SCVI(placeholder, **fields["scvi_init"])
        model.module.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("scvi.")})
        model.is_trained_ = True
        self = cls(model)
        self.state_mean = np.asarray(fields["state_mean"], dtype=np.float32)
        self.state_std = np.asarray(fields["state_std"], dtype=np.float32)
        self.log_library_range = tuple(fields["log_library_range"])
        return self

    def load_state_dict(self, fields: dict, tensors: dict[str, torch.Tensor]) -> ScviLatent:
        return type(self).from_saved(fields, tensors)
