"""``StateFlow``: rectified flow on the state vector of a cell (seed Option A).

::

    counts -> log1p(normalise) -> per-gene standardise -> x1 in R^G
    x0 ~ N(0, I);  v_theta(xt, t, c) ~ x1 - x0  (rectified flow, any registered backbone)
    sample: integrate dx/dt = v from t=0 to 1 -> un-standardise -> counts given a library size

Example::

    StateFlow.setup_anndata(adata, layer="counts", condition_key="cell_type")
    model = StateFlow(adata)
    model.train(max_epochs=200)
    fake = model.generate(conditions={"B": 100, "NK": 50})
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import scipy.sparse as sp
import torch
from anndata import AnnData

from exprflow import __version__
from exprflow.backbones import BACKBONES
from exprflow.data import prepare_counts, read_adata
from exprflow.errors import ExprflowInputError
from exprflow.flows import RectifiedFlow, guided_velocity
from exprflow.models.fit import fit_plan
from exprflow.models.output import generated_adata, resolve_conditions
from exprflow.models.persistence import load_model_dir, save_model_dir
from exprflow.models.setup import AnnDataSetup, recall_setup, remember_setup
from exprflow.models.training import FlowTrainingPlan, OptimConfig
from exprflow.representations import LogNormalLibrary, StateVector, StateVectorConfig, log1p_to_counts
from exprflow.sampling import integrate

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StateFlowConfig:
    """Everything that defines a StateFlow (saved as ``config.json``)."""

    backbone: str = "mlp"
    backbone_kwargs: dict = field(default_factory=lambda: {"hidden": 256, "depth": 3})
    time_sampler: str = "uniform"
    coupling: str = "independent"
    cond_dropout: float = 0.1
    representation: StateVectorConfig = StateVectorConfig()
    optim: OptimConfig = OptimConfig()
    count_method: str = "stochastic_round"


def _config_from_dict(d: dict) -> StateFlowConfig:
    d = dict(d)
    d["representation"] = StateVectorConfig(**d.get("representation", {}))
    d["optim"] = OptimConfig(**d.get("optim", {}))
    return StateFlowConfig(**d)


def _chunks(order: np.ndarray, codes: np.ndarray | None, batch_size: int):
    """Slices of ``order`` of at most ``batch_size`` cells, never mixing condition levels."""
    bounds = [0, len(order)]
    if codes is not None:
        sorted_codes = codes[order]
        bounds = [0, *np.flatnonzero(np.diff(sorted_codes)) + 1, len(order)]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        for start in range(lo, hi, batch_size):
            yield order[start : min(start + batch_size, hi)]


class StateFlow:
    """Rectified flow in (standardised log1p) gene space; see the module docstring."""

    def __init__(self, adata: AnnData | str, layer: str | None = None, condition_key: str | None = None, **config) -> None:
        adata = read_adata(adata)
        setup = recall_setup(adata) or AnnDataSetup(layer=layer, condition_key=condition_key)
        if layer is not None or condition_key is not None:
            setup = AnnDataSetup(layer=layer or setup.layer, condition_key=condition_key or setup.condition_key)
        self.setup = setup
        self.config = self._make_config(config)
        self.data = prepare_counts(adata, layer=setup.layer, condition_key=setup.condition_key, require_counts=True)
        self.var_names = list(self.data.var_names)
        self.levels = self.data.condition_levels
        n_cond = len(self.levels) if self.levels else 0
        self.representation = StateVector(self.config.representation, is_counts=self.data.is_counts).fit(self.data.X)
        self.library = LogNormalLibrary().fit(self.data.library_size, self.data.conditions)
        self.train_codes = self.data.conditions
        self._build_networks(n_cond)
        self.plan: FlowTrainingPlan | None = None
        self.history: list[tuple[int, float]] = []
        self.train_seconds: float | None = None
        self.is_trained = False
        logger.info(
            "StateFlow: %d cells x %d genes, %d condition levels, backbone %s (%d parameters)",
            self.data.n_cells, len(self.var_names), n_cond, self.config.backbone,
            sum(p.numel() for p in self.backbone.parameters()),
        )

    def _build_networks(self, n_conditions: int) -> None:
        """The backbone and the objective, from ``self.config`` (shared by ``__init__`` and ``load``)."""
        self.backbone = BACKBONES.get(self.config.backbone)(
            dim=len(self.var_names), n_conditions=n_conditions, **self.config.backbone_kwargs
        )
        self.objective = RectifiedFlow(
            time_sampler=self.config.time_sampler, coupling=self.config.coupling, cond_dropout=self.config.cond_dropout
        )

    @staticmethod
    def _make_config(overrides: dict) -> StateFlowConfig:
        base = StateFlowConfig()
        unknown = set(overrides) - set(asdict(base))
        if unknown:
            raise ExprflowInputError(f"Unknown StateFlow option(s) {sorted(unknown)}; valid: {sorted(asdict(base))}.")
        if isinstance(overrides.get("representation"), dict):
            overrides["representation"] = StateVectorConfig(**overrides["representation"])
        if isinstance(overrides.get("optim"), dict):
            overrides["optim"] = OptimConfig(**overrides["optim"])
        return replace(base, **overrides)

    @classmethod
    def setup_anndata(cls, adata: AnnData, layer: str | None = None, condition_key: str | None = None) -> None:
        """Remember which layer holds counts and which obs column is the condition (adata is not modified)."""
        prepare_counts(adata, layer=layer, condition_key=condition_key, require_counts=True)  # validate now
        remember_setup(adata, AnnDataSetup(layer=layer, condition_key=condition_key))

    # ------------------------------------------------------------------ training
    def train(
        self,
        max_epochs: int | None = None,
        batch_size: int = 256,
        max_steps: int | None = None,
        accelerator: str = "cpu",
        devices: int | str = 1,
        seed: int = 0,
        progress_bar: bool = True,
        log_dir: str | None = None,
    ) -> "StateFlow":
        """Train with Lightning. Give ``max_epochs`` or ``max_steps`` (default: 2,000 steps)."""
        if max_epochs is None and max_steps is None:
            max_steps = 2000
        self.plan = FlowTrainingPlan(self.backbone, self.objective, self.representation.encode, self.config.optim, 0)
        start = time.perf_counter()
        fit_plan(
            self.plan, self.data.X, self.data.conditions, batch_size=batch_size, max_epochs=max_epochs,
            max_steps=max_steps, accelerator=accelerator, devices=devices, seed=seed,
            progress_bar=progress_bar, log_dir=log_dir,
        )
        self.train_seconds = time.perf_counter() - start
        self.history = list(self.plan.history)
        self.is_trained = True
        return self

    # ---------------------------------------------------------------- generation
    @torch.no_grad()
    def sample_states(self, codes: np.ndarray | None, n: int, *, n_steps: int, solver: str, guidance: float,
                      generator: torch.Generator) -> tuple[torch.Tensor, int]:
        """Integrate the flow for ``n`` cells; returns the state vectors and the number of function evaluations."""
        x0 = torch.randn(n, len(self.var_names), generator=generator)
        cond = None if codes is None else torch.as_tensor(codes, dtype=torch.long)
        self.backbone.eval()
        with self._ema_weights():
            velocity = guided_velocity(self.backbone, cond, guidance)
            result = integrate(velocity, x0, solver=solver, n_steps=n_steps)
        return result.x, result.nfe

    def _ema_weights(self):
        if self.plan is None:
            from contextlib import nullcontext

            return nullcontext()
        return self.plan.ema.swap(self.backbone)

    def generate(
        self,
        n_cells: int | None = None,
        conditions: Mapping[str, int] | Sequence[str] | str | None = None,
        n_steps: int = 16,
        solver: str = "euler",
        guidance: float = 1.0,
        seed: int = 0,
        batch_size: int = 8192,
    ) -> AnnData:
        """Generate cells as an AnnData (integer sparse counts, conditions in obs, provenance in uns)."""
        if not self.is_trained:
            raise ExprflowInputError("The model is not trained yet: call train() (or load a trained model) first.")
        rng = np.random.default_rng(seed)
        gen = torch.Generator().manual_seed(seed)
        n, codes = resolve_conditions(n_cells, conditions, self.levels, self.train_codes, rng)
        # Cells are generated one condition level at a time (then put back in request order): every
        # cell of a chunk shares its (t, cond) modulation, which the backbone then broadcasts.
        order = np.arange(n) if codes is None else np.argsort(codes, kind="stable")
        chunks, nfe, start = [], 0, time.perf_counter()
        for sl_idx in _chunks(order, codes, batch_size):
            sl = None if codes is None else codes[sl_idx]
            x, nfe = self.sample_states(sl, len(sl_idx), n_steps=n_steps, solver=solver,
                                        guidance=guidance, generator=gen)
            y = self.representation.decode_log1p(x)
            lib = self.library.sample(y.shape[0], sl, rng)
            chunks.append(log1p_to_counts(y, lib, method=self.config.count_method, rng=rng))
        seconds = time.perf_counter() - start
        counts = sp.vstack(chunks).tocsr()[np.argsort(order, kind="stable")]

        provenance = {
            "model": "StateFlow", "version": __version__, "n_steps": n_steps, "solver": solver, "nfe": nfe,
            "guidance": guidance, "seed": seed, "sampling_seconds": seconds, "config": asdict(self.config),
        }
        return generated_adata(
            counts, self.var_names, condition_key=self.setup.condition_key,
            levels=self.levels, codes=codes, provenance=provenance,
        )

    # -------------------------------------------------------------- persistence
    def save(self, dir_path: str, overwrite: bool = False) -> None:
        """Save to a directory (``config.json`` + ``weights.pt``), atomically."""
        if not self.is_trained:
            raise ExprflowInputError("Nothing to save: the model is not trained.")
        config = {
            "model": "StateFlow", "exprflow_version": __version__, "torch_version": torch.__version__,
            "config": asdict(self.config), "setup": asdict(self.setup), "var_names": self.var_names,
            "condition_levels": self.levels,
            "train_condition_counts": None if self.train_codes is None else np.bincount(
                self.train_codes, minlength=len(self.levels)).tolist(),
            "representation": self.representation.state_dict(), "library": self.library.state_dict(),
            "train_seconds": self.train_seconds, "history": self.history,
        }
        tensors = {f"backbone.{k}": v for k, v in self.backbone.state_dict().items()}
        if self.plan is not None:
            tensors.update({f"ema.{k}": v for k, v in self.plan.ema.shadow.items()})
        save_model_dir(dir_path, config, tensors, overwrite=overwrite)

    @classmethod
    def load(cls, dir_path: str, adata: AnnData | None = None) -> "StateFlow":
        """Load a saved model; with ``adata``, check that its genes match the model's."""
        from exprflow.models.restore import restore_state_flow

        return restore_state_flow(cls, dir_path, adata, load_model_dir, _config_from_dict)
