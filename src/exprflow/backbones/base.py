"""The backbone contract.

A backbone is an ``nn.Module`` with::

    forward(x: Tensor[B, *shape], t: Tensor[B], cond: Tensor[B] (long) | None) -> Tensor[B, *shape]

- ``x`` is the state (for the state-vector flow ``shape == (dim,)``); the output has the same shape
  (a velocity for flows).
- ``t`` is flow time in [0, 1] (float, one per sample).
- ``cond`` holds integer condition codes in ``[0, n_conditions)``; the code ``n_conditions`` is the
  *null* condition used by classifier-free guidance. ``None`` means unconditional (null code).

Backbones never import an objective; objectives never import a concrete backbone. Every backbone is
constructed from keyword arguments ``(dim, n_conditions, **hyperparameters)`` and registered in
:data:`exprflow.backbones.registry.BACKBONES`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class Backbone(Protocol):
    """Structural type of every backbone (see module docstring)."""

    dim: int
    n_conditions: int

    def __call__(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor: ...
