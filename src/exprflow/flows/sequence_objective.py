"""Rectified flow on whole trajectories ``(B, T, d)``, with observed steps as context (inpainting).

A sample is a trajectory ``x1 = [z(t_1), ..., z(t_T)]`` on a fixed grid of physical times; ``present``
marks the grid points that have data (a held-out time point has none). Per trajectory a random subset
of the present steps is *observed* (given to the network as context channels with a mask, and kept at
its clean value in the state); the other present steps are *queried* and carry the loss::

    r ~ U(0, 1);  observed = present & (u < r)      (no context at all with probability cond_dropout)
    x0 ~ N(0, I), t ~ time sampler,  xt = (1 - t) x0 + t x1,  ut = x1 - x0
    xt[observed] = x1[observed]
    loss = mean over queried steps of ||v(xt, t, positions, x1, observed) - ut||^2

At sampling time the observed steps are clamped to their values and get zero velocity, so they are
reproduced exactly; the queried steps (e.g. a held-out time point, or all steps) are generated. The
same network therefore forecasts, interpolates and generates whole trajectories.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from exprflow.deprecation import renamed
from exprflow.flows.paths import RectifiedPath
from exprflow.flows.time_sampling import TIME_SAMPLERS
from exprflow.sampling import integrate
from exprflow.sampling.options import EULER_REFERENCE


def sample_observed(present: Tensor, batch: int, cond_dropout: float = 0.2,
                    generator: torch.Generator | None = None, *, p_uncond: float | None = None) -> Tensor:
    """Random observed-step masks within ``present``; at least one step is left to query.

    Parameters
    ----------
    present
        Which grid steps have data, ``(T,)`` bool.
    batch
        Number of trajectories.
    cond_dropout
        Probability that a trajectory is given no observed step (its context is dropped, as a
        condition is in classifier-free guidance training).
    generator
        Random generator of the masks.
    p_uncond
        Deprecated name of ``cond_dropout``.

    Returns
    -------
    Tensor
        Observed-step masks ``(batch, T)``, bool.
    """
    cond_dropout = renamed("cond_dropout", cond_dropout, "p_uncond", p_uncond, default=0.2)
    present = present.bool()
    rate = torch.rand(batch, 1, generator=generator)
    observed = (torch.rand(batch, len(present), generator=generator) < rate) & present
    observed &= (torch.rand(batch, 1, generator=generator) >= cond_dropout)
    full = (observed == present).all(dim=1)  # nothing left to query: free one present step
    if full.any():
        idx = torch.nonzero(present).flatten()
        pick = idx[torch.randint(len(idx), (int(full.sum()),), generator=generator)]
        observed[torch.nonzero(full).flatten(), pick] = False
    return observed


class SequenceRectifiedFlow:
    """Rectified-flow objective on trajectories; ``loss(model, x1, cond)`` as :class:`RectifiedFlow`'s.

    Parameters
    ----------
    positions
        Physical time of every grid step in [0, 1], ``(T,)``.
    present
        Which grid steps have data, ``(T,)`` bool.
    time_sampler
        A name in :data:`TIME_SAMPLERS`.
    cond_dropout
        Probability that a trajectory is given no observed step.
    p_uncond
        Deprecated name of ``cond_dropout``.
    """

    def __init__(self, positions: Tensor, present: Tensor, time_sampler: str = "uniform",
                 cond_dropout: float = 0.2, *, p_uncond: float | None = None) -> None:
        self.positions = torch.as_tensor(positions, dtype=torch.float32)
        self.present = torch.as_tensor(present, dtype=torch.bool)
        self.time_sampler = TIME_SAMPLERS.build(time_sampler)
        self.cond_dropout = float(renamed("cond_dropout", cond_dropout, "p_uncond", p_uncond, default=0.2))
        self.path = RectifiedPath()

    def loss(self, model: nn.Module, x1: Tensor, cond: Tensor | None = None,
             generator: torch.Generator | None = None) -> Tensor:
        """Mean squared velocity error over the queried steps of ``x1 (B, T, d)``."""
        batch = x1.shape[0]
        observed = sample_observed(self.present, batch, self.cond_dropout, generator).to(x1.device)
        queried = (self.present.to(x1.device)[None, :] & ~observed).to(x1.dtype)[..., None]  # (B, T, 1)
        x0 = torch.randn(x1.shape, generator=generator, dtype=x1.dtype).to(x1.device)
        t = self.time_sampler.sample(batch, generator=generator).to(x1)
        xt, ut = self.path.sample(x0, x1, t)
        keep = observed[..., None]
        xt = torch.where(keep, x1, xt)
        v = model(xt, t, self.positions.to(x1), context=x1, mask=observed, cond=cond)
        return ((v - ut) ** 2 * queried).sum() / (queried.sum() * x1.shape[-1]).clamp_min(1.0)


@torch.no_grad()
def sample_trajectories(model: nn.Module, x0: Tensor, positions: Tensor, context: Tensor | None = None,
                        observed: Tensor | None = None, *, n_steps: int = EULER_REFERENCE.n_steps,
                        solver: str = EULER_REFERENCE.solver,
                        cond: Tensor | None = None) -> tuple[Tensor, int]:
    """Integrate the sequence flow from noise ``x0 (B, T, d)``; observed steps stay at ``context``.

    Returns the trajectories ``(B, T, d)`` and the number of network evaluations.
    """
    if observed is None:
        observed = torch.zeros(x0.shape[:2], dtype=torch.bool)
        context = torch.zeros_like(x0)
    keep = observed.bool()[..., None]
    positions = torch.as_tensor(positions, dtype=x0.dtype)

    def velocity(x: Tensor, t: Tensor) -> Tensor:
        x = torch.where(keep, context, x)
        v = model(x, t, positions, context=context, mask=observed, cond=cond)
        return torch.where(keep, torch.zeros_like(v), v)

    result = integrate(velocity, torch.where(keep, context, x0), solver=solver, n_steps=n_steps)
    return torch.where(keep, context, result.x), result.nfe
