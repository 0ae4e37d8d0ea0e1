"""Classifier-free guidance (Ho & Salimans, 2022) for velocity models.

With the null code ``model.n_conditions`` (the model trained with condition dropout)::

    v = v_null + scale * (v_cond - v_null)

``scale = 1`` is the plain conditional velocity (one forward pass), ``scale = 0`` the unconditional one
(one pass with null codes); any other scale evaluates both in ONE batched forward pass of size ``2B``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

Velocity = Callable[[Tensor, Tensor | float], Tensor]


def _time_batch(t: Tensor | float, x: Tensor) -> Tensor:
    """Flow time as ``(B,)`` with ``x``'s dtype and device (from a float, 0-d, or ``(B,)`` tensor)."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return t.reshape(1).expand(x.shape[0]) if t.numel() == 1 else t.reshape(x.shape[0])


def guided_velocity(model: nn.Module, cond: Tensor | int | None, scale: float = 1.0) -> Velocity:
    """Return ``velocity(x, t)`` implementing classifier-free guidance for ``model(x, t, cond)``.

    Parameters
    ----------
    model
        backbone with attribute ``n_conditions`` (the null code).
    cond
        condition codes ``(B,)``, one int for all samples, or None (unconditional; ``scale`` unused).
    scale
        guidance scale ``w``; 1 = conditional, 0 = unconditional, > 1 extrapolates.
    """
    null = int(model.n_conditions)
    scale = float(scale)

    def codes(value: int | Tensor, x: Tensor) -> Tensor:
        if isinstance(value, Tensor):
            return value.to(device=x.device, dtype=torch.long).reshape(x.shape[0])
        return torch.full((x.shape[0],), int(value), dtype=torch.long, device=x.device)

    def velocity(x: Tensor, t: Tensor | float) -> Tensor:
        tb = _time_batch(t, x)
        if cond is None or scale == 0.0:
            return model(x, tb, codes(null, x))
        c = codes(cond, x)
        if scale == 1.0:
            return model(x, tb, c)
        v = model(torch.cat([x, x]), torch.cat([tb, tb]), torch.cat([c, torch.full_like(c, null)]))
        v_cond, v_null = v.chunk(2, dim=0)
        return v_null + scale * (v_cond - v_null)

    return velocity
