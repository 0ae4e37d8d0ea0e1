"""docs/architecture.md's "how to add a model", done literally: a flow on log1p-normalised expression
written with the four hooks it names gets train / generate / save / load / checkpoints from FlowModel."""

from dataclasses import dataclass

import numpy as np
import torch

from exprflow.models.base import FlowModel
from exprflow.representations import LogNormalLibrary, log1p_to_counts, log_normalise
from exprflow.training.plans import FlowTrainingPlan, OptimConfig


@dataclass(frozen=True)
class Log1pFlowConfig:
    backbone: str = "mlp"
    backbone_kwargs: dict | None = None
    time_sampler: str = "uniform"
    coupling: str = "independent"
    cond_dropout: float = 0.1
    flow_optim: OptimConfig = OptimConfig()


class Log1pFlow(FlowModel):
    config_cls = Log1pFlowConfig

    def _fit_representation(self):
        self.library = LogNormalLibrary().fit(self.data.library_size, self.train_codes)

    def _build_networks(self, n_conditions):
        self.backbone = self._make_backbone(len(self.var_names))
        self.objective = self._objective()

    def _flow_data(self, budget, trainer):
        return self.data.X, self.train_codes

    def _flow_plan(self, budget):  # the rows are densified per batch; the plan log-normalises them
        return FlowTrainingPlan(self.backbone, self.objective, lambda x: torch.from_numpy(log_normalise(x.numpy())),
                                self.config.flow_optim, 0)

    def _generate_chunk(self, codes, n, *, n_steps, solver, guidance, generator, rng):
        y, self._last_nfe = self.sample_states(codes, n, n_steps=n_steps, solver=solver, guidance=guidance,
                                               generator=generator)
        return log1p_to_counts(np.maximum(y.numpy(), 0), self.library.sample(n, codes, rng), rng=rng)

    def _extra_state(self):
        return {"library": self.library.state_dict()}

    def _load_extra(self, saved, tensors):
        from exprflow.persistence.restore import load_backbone_weights

        self.library = LogNormalLibrary().load_state_dict(saved["library"])
        load_backbone_weights(self.backbone, tensors, "backbone")


def test_a_new_model_gets_the_whole_contract(counts_adata, tmp_path):
    model = Log1pFlow(counts_adata, condition_key="cell_type", backbone_kwargs={"hidden": 16, "depth": 1})
    model.train(max_steps=5, batch_size=32, progress_bar=False, checkpoint_dir=str(tmp_path / "ckpt"))
    assert (tmp_path / "ckpt" / "flow.ckpt").exists() and len(model.history["flow"]) == 5
    out = model.generate(conditions={"type1": 7}, n_steps=2, seed=3)
    assert out.n_obs == 7 and (out.obs["cell_type"] == "type1").all()
    model.save(tmp_path / "m")
    again = Log1pFlow.load(tmp_path / "m").generate(conditions={"type1": 7}, n_steps=2, seed=3)
    assert (again.X != out.X).nnz == 0
