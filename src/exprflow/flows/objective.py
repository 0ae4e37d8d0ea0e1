"""The rectified-flow training objective with classifier-free-guidance condition dropout.

For data ``x1`` (B, ...) with optional condition codes ``cond`` (B,)::

    x0 ~ N(0, I)                      noise at t = 0, reordered by the coupling
    t  ~ time sampler                 (B,)
    xt = (1 - t) x0 + t x1            ut = x1 - x0
    cond' = cond with a random fraction ``cond_dropout`` replaced by the null code
    loss = mean((v(xt, t, cond') - ut)^2)

The objective knows only the backbone contract ``model(x, t, cond)`` and ``model.n_conditions`` (the null
code); it never imports a concrete backbone.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from exprflow.flows.couplings import COUPLINGS
from exprflow.flows.paths import RectifiedPath
from exprflow.flows.time_sampling import TIME_SAMPLERS


def drop_conditions(
    cond: Tensor, null_code: int, p: float, generator: torch.Generator | None = None
) -> Tensor:
    """Replace each code in ``cond (B,)`` by ``null_code`` independently with probability ``p``."""
    if p <= 0.0:
        return cond
    drop = torch.rand(cond.shape, generator=generator, device=cond.device) < p
    return torch.where(drop, torch.full_like(cond, null_code), cond)


class RectifiedFlow:
    """Rectified-flow objective: ``loss(model, x1, cond)``.

    Parameters
    ----------
    time_sampler
        a name in :data:`TIME_SAMPLERS` (default hyperparameters) or a sampler object.
    coupling
        a name in :data:`COUPLINGS` or a coupling object.
    cond_dropout
        probability of replacing a condition code by the null code during training.
    conditions
        a :class:`~exprflow.flows.conditions.ConditionSpace` for packed codes of several
        attributes: each attribute is then dropped to its own null independently with ``cond_dropout``.
    """

    def __init__(
        self, time_sampler: Any = "uniform", coupling: Any = "independent", cond_dropout: float = 0.1,
        conditions: Any = None,
    ) -> None:
        if not 0.0 <= cond_dropout < 1.0:
            raise ValueError(f"cond_dropout must lie in [0, 1), got {cond_dropout}")
        if isinstance(time_sampler, str):
            time_sampler = TIME_SAMPLERS.build(time_sampler)
        self.time_sampler = time_sampler
        self.coupling = COUPLINGS.build(coupling) if isinstance(coupling, str) else coupling
        self.cond_dropout = float(cond_dropout)
        self.conditions = conditions
        self.path = RectifiedPath()

    def loss(
        self,
        model: nn.Module,
        x1: Tensor,
        cond: Tensor | None = None,
        n_null: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Scalar mean-squared error between ``model(xt, t, cond')`` and ``ut``, averaged per element.

        Parameters
        ----------
        model
            a backbone ``model(x, t, cond) -> v``.
        x1
            data batch ``(B, ...)``.
        cond
            condition codes ``(B,)`` or None (unconditional: the model sees the null code).
        n_null
            the null code; defaults to ``model.n_conditions``.
        generator
            random generator (on ``x1.device``) for noise, times and dropout.
        """
        batch = x1.shape[0]
        x0 = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
        x0 = self.coupling.pair(x0, x1, cond)
        t = self.time_sampler.sample(batch, generator=generator, device=x1.device).to(x1.dtype)
        xt, ut = self.path.sample(x0, x1, t)
        if cond is not None:
            if self.conditions is not None:
                cond = self.conditions.drop(cond, self.cond_dropout, generator)
            else:
                null = int(model.n_conditions if n_null is None else n_null)
                cond = drop_conditions(cond, null, self.cond_dropout, generator)
        v = model(xt, t, cond)
        return torch.mean((v - ut) ** 2)

    def __repr__(self) -> str:
        return (
            f"RectifiedFlow(time_sampler={self.time_sampler!r}, coupling={self.coupling!r}, "
            f"cond_dropout={self.cond_dropout})"
        )
