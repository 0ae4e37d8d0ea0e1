"""``StateFlow``: rectified flow on the state vector of a cell (its normalised expression in gene space).

::

    counts -> log1p(normalise) -> per-gene standardise -> x1 in R^G
    x0 ~ N(0, I);  v_theta(xt, t, c) ~ x1 - x0  (rectified flow, any registered backbone)
    sample: integrate dx/dt = v from t=0 to 1 -> un-standardise -> counts given a library size

Example::

    StateFlow.setup_anndata(adata, layer="counts", condition_key="cell_type")
    model = StateFlow(adata)
    model.train(max_steps=2000)                 # FlowModel.train: budgets, devices, checkpoints
    fake = model.generate(conditions={"B": 100, "NK": 50})
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from exprflow.backbones.base import GeneAware, GeneContext
from exprflow.models.base import FlowModel
from exprflow.training.plans import FlowTrainingPlan, OptimConfig
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
    flow_optim: OptimConfig = OptimConfig()
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

    def _flow_data(self, budget, trainer):
        return self.data.X, self.train_codes

    def _flow_plan(self, budget) -> FlowTrainingPlan:
        return FlowTrainingPlan(self.backbone, self.objective, self.representation.encode, self.config.flow_optim, 0)

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

    def _load_extra(self, saved: dict, tensors: dict[str, torch.Tensor]) -> None:
        from exprflow.persistence.restore import load_backbone_weights

        self.representation = StateVector(self.config.representation).load_state_dict(saved["representation"])
        self.library = LogNormalLibrary().load_state_dict(saved["library"])
        load_backbone_weights(self.backbone, tensors, "backbone")
