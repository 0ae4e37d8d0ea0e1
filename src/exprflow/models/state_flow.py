"""``StateFlow``: rectified flow on the state vector of a cell (its normalised expression in gene space).

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
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from exprflow.backbones.base import GeneAware, GeneContext
from exprflow.models.base import FlowModel
from exprflow.models.history import training_history
from exprflow.models.seeding import seeded_training
from exprflow.models.fit import fit_plan
from exprflow.models.training import FlowTrainingPlan, OptimConfig
from exprflow.representations import LogNormalLibrary, StateVector, StateVectorConfig, log1p_to_counts

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StateFlowConfig:
    """Everything that defines a StateFlow (saved as ``config.json``)."""

    backbone: str = "mlp"
    backbone_kwargs: dict | None = None  # None: the backbone's defaults (mlp: hidden 256, depth 3)
    time_sampler: str = "uniform"
    coupling: str = "independent"
    cond_dropout: float = 0.1
    representation: StateVectorConfig = StateVectorConfig()
    optim: OptimConfig = OptimConfig()
    count_method: str = "stochastic_round"


class StateFlow(FlowModel):
    """Rectified flow in (standardised log1p) gene space; see the module docstring."""

    config_cls = StateFlowConfig

    def _fit_representation(self) -> None:
        self.representation = StateVector(self.config.representation, is_counts=self.data.is_counts).fit(self.data.X)
        self.library = LogNormalLibrary().fit(self.data.library_size, self.train_codes)

    def _build_networks(self, n_conditions: int) -> None:
        self.backbone = self._make_backbone(len(self.var_names))
        self.objective = self._objective()
        if self.data is not None and isinstance(self.backbone, GeneAware):
            rep = self.representation
            standardized = rep.config.standardize
            self.backbone.setup_genes(GeneContext(
                self.var_names, self.var, self.data.X, rep.encode, log1p_mean=rep.mean if standardized else None,
                log1p_std=rep.std if standardized else None, target_sum=rep.config.target_sum))
        if self.data is not None:
            logger.info(
                "StateFlow: %d cells x %d genes, %d condition levels, backbone %s (%d parameters)",
                self.data.n_cells, len(self.var_names), n_conditions, self.config.backbone,
                sum(p.numel() for p in self.backbone.parameters()),
            )

    @seeded_training
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
        num_nodes: int = 1,
        strategy: str = "auto",
        checkpoint_dir: str | None = None,
        checkpoint_every: int | None = None,
        resume: bool = False,
    ) -> "StateFlow":
        """Train with Lightning. Give ``max_epochs`` or ``max_steps`` (default: 2,000 steps).

        ``batch_size`` cells per device; ``devices``, ``num_nodes``, ``strategy="ddp"``: multi-device
        training (docs/scaling.md). ``checkpoint_dir``: write ``flow.ckpt`` there every
        ``checkpoint_every`` steps and at the end; ``resume=True`` continues from it exactly.
        ``seed``: initialises the networks of a model not trained yet (a trained one continues from
        its weights) and draws the batches, so it alone fixes the result on CPU, whatever the global
        random state; the caller's torch, NumPy and Python generators are left as they were
        (:mod:`exprflow.models.seeding`).
        """
        if max_epochs is None and max_steps is None:
            max_steps = 2000
        self.plan = FlowTrainingPlan(self.backbone, self.objective, self.representation.encode, self.config.optim, 0)
        start = time.perf_counter()
        fit_plan(
            self.plan, self.data.X, self.train_codes, batch_size=batch_size, max_epochs=max_epochs,
            max_steps=max_steps, accelerator=accelerator, devices=devices, seed=seed,
            progress_bar=progress_bar, log_dir=log_dir, num_nodes=num_nodes, strategy=strategy,
            checkpoint_path=None if checkpoint_dir is None else f"{checkpoint_dir}/flow.ckpt",
            checkpoint_every=checkpoint_every, resume=resume,
        )
        self.train_seconds = time.perf_counter() - start
        self.history = training_history(flow=self.plan.history)
        self.is_trained = True
        return self

    def _generate_chunk(self, codes, n, *, n_steps, solver, guidance, generator, rng) -> sp.csr_matrix:
        x, self._last_nfe = self.sample_states(codes, n, n_steps=n_steps, solver=solver, guidance=guidance,
                                               generator=generator)
        y = self.representation.decode_log1p(x)
        lib = self.library.sample(y.shape[0], codes, rng)
        return log1p_to_counts(y, lib, method=self.config.count_method, rng=rng)

    def get_cell_embedding(self, adata, layer: str | None = None, on_unknown: str = "raise",
                           batch_size: int = 256) -> np.ndarray:
        """Pooled cell embeddings ``(n_obs, hidden)`` from a gene-set backbone, on any gene panel.

        Genes are matched by name; genes the model does not know raise (``on_unknown="raise"``) or are
        dropped with a warning (``"drop"``). See :mod:`exprflow.models.embedding`.
        """
        from exprflow.models.embedding import cell_embedding

        return cell_embedding(self, adata, layer=layer, on_unknown=on_unknown, batch_size=batch_size)

    # -------------------------------------------------------------- persistence
    def _extra_state(self) -> dict:
        return {"representation": self.representation.state_dict(), "library": self.library.state_dict()}

    def _tensors(self) -> dict[str, torch.Tensor]:
        tensors = {f"backbone.{k}": v for k, v in self.backbone.state_dict().items()}
        if self.plan is not None:
            tensors.update({f"ema.{k}": v for k, v in self.plan.ema.shadow.items()})
        return tensors

    def _load_extra(self, saved: dict, tensors: dict[str, torch.Tensor]) -> None:
        from exprflow.models.restore import load_backbone_weights

        self.representation = StateVector(self.config.representation).load_state_dict(saved["representation"])
        self.library = LogNormalLibrary().load_state_dict(saved["library"])
        load_backbone_weights(self.backbone, tensors, "backbone")
