"""The rectified-flow (linear interpolation) probability path.

Convention: ``x0`` is noise at ``t = 0``, ``x1`` is data at ``t = 1``::

    xt = (1 - t) * x0 + t * x1        ut = d xt / dt = x1 - x0

(Liu et al., "Flow Straight and Fast", 2022; Lipman et al., "Flow Matching", 2023, with sigma_min = 0.)
"""

from __future__ import annotations

from torch import Tensor


def _expand_time(t: Tensor, like: Tensor) -> Tensor:
    """``t (B,)`` -> ``(B, 1, ..., 1)`` broadcastable against ``like (B, ...)``."""
    if t.ndim != 1 or t.shape[0] != like.shape[0]:
        raise ValueError(f"t must have shape ({like.shape[0]},), got {tuple(t.shape)}")
    return t.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


class RectifiedPath:
    """Straight path from noise ``x0`` (t = 0) to data ``x1`` (t = 1) with constant velocity ``x1 - x0``."""

    def sample(self, x0: Tensor, x1: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(xt, ut)`` for ``x0, x1 (B, ...)`` and ``t (B,)``."""
        if x0.shape != x1.shape:
            raise ValueError(f"x0 and x1 must have equal shapes, got {tuple(x0.shape)}, {tuple(x1.shape)}")
        tb = _expand_time(t, x1)
        xt = (1.0 - tb) * x0 + tb * x1
        ut = x1 - x0
        return xt, ut

    def __repr__(self) -> str:
        return "RectifiedPath()"
