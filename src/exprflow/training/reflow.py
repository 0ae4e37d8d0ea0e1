"""Reflow (Liu, Gong & Liu 2022, "Flow straight and fast"): retrain a rectified flow on its own couplings.

A trained flow maps noise ``x0`` to a state ``x1 = ODE(x0)``; its paths curve, so few-step solvers
miss. Reflow draws pairs ``(x0, x1)`` with the trained flow (the teacher, an accurate solver) and
trains the velocity on the straight lines between them::

    x_t = (1 - t) x0 + t x1,      loss = || v(x_t, t, c) - (x1 - x0) ||^2

starting from the teacher's (EMA) weights. The pairs no longer cross, so the new flow's paths are
nearly straight and one or two Euler steps follow them. Condition codes are drawn from the training
frequencies and dropped with the model's ``cond_dropout``, so classifier-free guidance keeps working.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from torch import Tensor

from exprflow.errors import ExprflowInputError
from exprflow.flows import drop_conditions
from exprflow.training.fit import fit_plan
from exprflow.training.history import history_frame
from exprflow.training.plans import FlowTrainingPlan

logger = logging.getLogger(__name__)

#: the sampler a reflowed model uses by default
REFLOW_SAMPLER = {"solver": "euler", "n_steps": 1}


class ReflowTrainingPlan(FlowTrainingPlan):
    """:class:`FlowTrainingPlan` on fixed pairs: each row of ``batch["x"]`` is ``[x0 | x1]``."""

    def compute_loss(self, batch: dict) -> tuple[Tensor, int]:
        x = batch["x"]
        d = x.shape[1] // 2
        x0, x1 = x[:, :d], x[:, d:]
        t = self.objective.time_sampler.sample(x.shape[0]).to(x.dtype)
        xt, ut = self.objective.path.sample(x0, x1, t)
        cond = batch.get("cond")
        if cond is not None:
            cond = drop_conditions(cond, self.backbone.n_conditions, self.objective.cond_dropout)
        return torch.mean((self.backbone(xt, t, cond) - ut) ** 2), x.shape[0]


def teacher_pairs(model, n_pairs: int, *, n_steps: int, solver: str, seed: int, batch_size: int = 8192):
    """``(x0, x1, codes)``: noise, the trained flow's states from it, and condition codes (None: unconditional)."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    codes = None if model.train_codes is None else rng.choice(model.train_codes, size=n_pairs)
    x0 = torch.randn(n_pairs, model.backbone.dim, generator=gen)
    x1 = torch.empty_like(x0)
    order = np.arange(n_pairs) if codes is None else np.argsort(codes, kind="stable")
    from exprflow.output.generation import chunks_by_condition

    for idx in chunks_by_condition(order, codes, batch_size):
        part = None if codes is None else codes[idx]
        x1[idx], _ = model.sample_states(part, len(idx), n_steps=n_steps, solver=solver, guidance=1.0,
                                         generator=gen, x0=x0[idx])
    return x0.numpy(), x1.numpy(), codes


def reflow(model, n_pairs: int = 20_000, steps: int = 2000, *, n_steps: int = 8, solver: str = "heun",
           batch_size: int = 256, seed: int = 0, progress_bar: bool = True, **fit_options):
    """Reflow ``model`` in place (see the module docstring); returns it. Used by :meth:`FlowModel.reflow`."""
    from exprflow.models.base import FlowModel

    if int(n_pairs) < 2 or int(steps) < 1:
        raise ExprflowInputError(f"reflow needs n_pairs >= 2 and steps >= 1, got {n_pairs} and {steps}.")
    if not model.is_trained:
        raise ExprflowInputError("Reflow needs a trained model: call train() (or load a trained model) first.")
    if type(model).sample_states is not FlowModel.sample_states:
        raise ExprflowInputError(f"{type(model).__name__} does not support reflow: it needs a flow with one "
                                 "state per cell (LatentFlow, StateFlow).")
    start = time.perf_counter()
    x0, x1, codes = teacher_pairs(model, int(n_pairs), n_steps=n_steps, solver=solver, seed=seed)
    if model.plan is not None:  # start from the teacher's sampling (EMA) weights
        model.plan.ema.copy_to(model.backbone)
    optim = getattr(model.config, "flow_optim", None) or model.config.optim
    plan = ReflowTrainingPlan(model.backbone, model.objective, lambda s: s, optim, 0)
    model.backbone.train()
    fit_plan(plan, np.concatenate([x0, x1], axis=1), codes, batch_size=min(batch_size, int(n_pairs)),
             max_epochs=None, max_steps=int(steps), seed=seed, progress_bar=progress_bar, **fit_options)
    model.plan = plan
    model.reflow_info = {"n_pairs": int(n_pairs), "steps": int(steps), "teacher": {"solver": solver, "n_steps": n_steps},
                         "seconds": time.perf_counter() - start, **{"sampler": dict(REFLOW_SAMPLER)}}
    if isinstance(model.history, dict):
        model.history["reflow"] = history_frame(plan.history)
    logger.info("reflow: %d pairs, %d steps in %.1f s", n_pairs, steps, model.reflow_info["seconds"])
    return model
